// The sign-in forms of the console and the wallboard show the demo login only when this server
// has the demo account (demo.enabled: only on a loopback address, docs/security.md). Text only.

/** Fill and show `#demo-login` from `GET /api/v1/auth/demo`; leaves it hidden on any failure. */
export async function showDemoLogin(baseUrl = "") {
  const hint = document.getElementById("demo-login");
  if (!hint) return;
  try {
    const response = await fetch(`${baseUrl}/api/v1/auth/demo`);
    const body = await response.json();
    if (!response.ok || !body.enabled) return;
    hint.querySelector(".demo-username").textContent = body.username;
    hint.querySelector(".demo-password").textContent = body.password;
    hint.hidden = false;
  } catch {
    /* no hint */
  }
}
