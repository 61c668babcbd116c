# Two commands do all the set-up on a fresh machine:
#   make run   - creates .venv, installs Segue, starts the server (embedded Redis, pages at the printed URL)
#   make test  - creates .venv, installs the test extras and Debian's Chromium (with a CJK font), nginx and redis-sentinel (when root), runs every test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: run test install install-test chromium cluster-parts vendor clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(TSTAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP) $@

install: $(STAMP)
install-test: $(TSTAMP)

run: $(STAMP)
	$(PY) -m server serve

# Debian's Chromium: Playwright's own browser download does not work on a closed network.
# With it a CJK font (fonts-noto-cjk): zh-CN pages and their screenshots show characters, not boxes.
CJK_FONT := /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
chromium:
	@if [ -x /usr/bin/chromium ] && [ -f $(CJK_FONT) ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's chromium and fonts-noto-cjk..."; \
		(apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
			install -y -qq chromium fonts-noto-cjk >/dev/null) \
		|| { echo "could not install chromium and fonts-noto-cjk with apt-get"; exit 1; }; \
	else echo "chromium or fonts-noto-cjk is missing: run 'sudo apt-get install -y chromium fonts-noto-cjk' (browser tests need /usr/bin/chromium)"; exit 1; fi

# Debian's nginx, redis-server and redis-sentinel: the scale-out and failover tests run them as
# subprocesses on loopback (tests/integration/test_cluster*.py, test_redis_faults.py).
cluster-parts:
	@if [ -x /usr/sbin/nginx ] && [ -x /usr/bin/redis-sentinel ] && [ -x /usr/bin/redis-server ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's nginx, redis-server and redis-sentinel..."; \
		(apt-get -o DPkg::Lock::Timeout=300 update -qq && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
			install -y -qq nginx redis-server redis-sentinel >/dev/null) \
		|| { echo "could not install nginx, redis-server and redis-sentinel with apt-get"; exit 1; }; \
	else echo "nginx or redis-sentinel is missing: run 'sudo apt-get install -y nginx redis-server redis-sentinel'"; exit 1; fi

test: $(TSTAMP) chromium cluster-parts
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache

# Refresh the vendored socket.io client from the npm registry (see web/sdk/vendor/README.md).
SOCKETIO_CLIENT ?= 4.8.4
vendor:
	tmp=$$(mktemp -d) && cd $$tmp && npm pack --silent socket.io-client@$(SOCKETIO_CLIENT) >/dev/null && tar xzf socket.io-client-*.tgz \
	&& sed 's|//# sourceMappingURL=.*||' package/dist/socket.io.esm.min.js > $(CURDIR)/web/sdk/vendor/socket.io.esm.min.js \
	&& cp package/LICENSE $(CURDIR)/web/sdk/vendor/socket.io-client.LICENSE && rm -rf $$tmp

# The command line's translations (server/i18n.py; docs/cli.md "Languages"): extract the marked strings and
# argparse's own words into server/locale/segue.pot, merge them into every segue.po (then translate the new
# entries: tests/unit/test_cli_i18n.py names them), compile the segue.mo files (committed: a clone needs no step).
BABEL := $(VENV)/bin/pybabel
.PHONY: locale
locale: $(TSTAMP)
	$(BABEL) extract -k Message -k N_ --no-location --sort-output --project Segue --copyright-holder "Segue contributors" \
		-o server/locale/segue.pot server "$$($(PY) -c 'import argparse; print(argparse.__file__)')"
	$(BABEL) update -D segue -i server/locale/segue.pot -d server/locale --no-fuzzy-matching -w 100
	$(BABEL) compile -D segue -d server/locale --statistics

# After editing a file of web/sdk/: write the new SRI hashes into docs/sdk.md (a test checks them).
.PHONY: sdk-hashes
sdk-hashes: $(STAMP)
	$(PY) -m server.sri --update-docs
