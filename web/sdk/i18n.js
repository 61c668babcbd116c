/**
 * Segue's message catalogue: every string the widget, the call bar and the event descriptions show
 * to a person comes from here, so a page can speak the visitor's language.
 *
 *   import { translator } from "/sdk/i18n.js";
 *   const t = translator("zh-CN", { "widget.title": "联系客服" });   // overrides are optional
 *   t("widget.typing", { name: "Ada" });   // "Ada正在输入…"
 *   t.time(Date.now());                     // "14:05" (Intl, in the translator's locale)
 *   t.duration(75);                         // "1分钟15秒"
 *
 * Messages are whole sentences with `{name}` placeholders (no string concatenation, no plural
 * rules: each message is phrased so that one form fits every number). A key missing from a
 * locale falls back to English, then to the key itself (so a missing translation shows, and can
 * be found, rather than breaking the page).
 */

/** The English catalogue: the reference (every key exists here). */
const en = {
  // --- the widget ---------------------------------------------------------------------------
  "widget.title": "Chat with us",
  "widget.hide": "Hide chat",
  "widget.minimise": "Minimise chat",
  "widget.unread": "Unread messages: {count}",
  "widget.status.connecting": "Connecting…",
  "widget.status.online": "Online",
  "widget.status.reconnecting": "Reconnecting…",
  "widget.status.unreachable": "Can't reach the server — retrying…",
  "widget.status.refused": "Can't connect: {message}",
  "widget.call": "Call us",
  "widget.call.title": "Talk to us by voice",
  "widget.video_call": "Video call",
  "widget.video_call.title": "Talk to us face to face (camera on)",
  "widget.end": "End chat",
  "widget.intro": "Hi! Send us a message and the next available person will answer.",
  "widget.topic": "Topic",
  "widget.start.placeholder": "How can we help? (optional)",
  "widget.name.placeholder": "Your name (optional)",
  "widget.start": "Start chat",
  "widget.message.placeholder": "Type a message…",
  "widget.message.label": "Message",
  "widget.send": "Send",
  "widget.log.label": "Conversation",
  "widget.agent": "Agent",
  "widget.typing": "{name} is typing…",
  "widget.position": "You are number {position} in line",
  "widget.position.wait": "You are number {position} in line · estimated wait {wait}",
  "widget.waiting": "Waiting for an agent…",
  "widget.rating.question": "How did we do?",
  "widget.rating.label": "Rating",
  "widget.rating.star": "{score} out of 5",
  "widget.rating.comment": "Anything to add? (optional)",
  "widget.rating.send": "Send rating",
  "widget.rating.thanks": "Thank you for your feedback!",
  "widget.new_chat": "Start a new chat",

  // --- errors shown to the visitor (by SegueError code; other codes show the server's message) ---
  "error.timeout": "The server did not answer. Please try again.",
  "error.not_connected": "Not connected yet. Please try again in a moment.",
  "error.unavailable": "Can't reach the server. Please try again in a moment.",
  "error.rate_limited": "Too many requests. Please wait a moment and try again.",
  "error.too_large": "That is too long to send.",
  "error.forbidden": "That is not allowed here.",
  "error.not_found": "That conversation no longer exists.",
  "error.media": "The camera or microphone could not be used: {message}",
  "error.other": "Something went wrong: {message}",

  // --- message receipts (dom.js) ------------------------------------------------------------
  "receipt.sending": "Sending…",
  "receipt.sent": "Sent",
  "receipt.read": "Read",
  "receipt.not_sent": "Not sent: {error}",
  "receipt.retry": "Retry",

  // --- channels -----------------------------------------------------------------------------
  "channel.chat": "Chat",
  "channel.voice": "Voice",
  "channel.video": "Video",
  "channel.screen": "Screen share",
  // in the middle of a sentence ("declined the {media} request")
  "media.chat": "chat",
  "media.voice": "voice",
  "media.video": "video",
  "media.screen": "screen share",

  // --- people in event descriptions ---------------------------------------------------------
  "who.you": "You",
  "who.customer": "The customer",
  "who.agent": "The agent",
  "who.someone": "Someone",
  "who.an_agent": "an agent",
  "who.anyone": "someone",
  "who.queue": "the {queue} queue",

  // --- conversation events (format.js describeEvent) ------------------------------------------
  "event.started": "Conversation started",
  "event.started.detail": "Conversation started ({channel}, queue {queue})",
  "event.started.detail_from": "Conversation started ({channel}, queue {queue}) from “{where}”",
  "event.queued": "Queued in {queue}",
  "event.queued.customer": "Waiting for an agent…",
  "event.offered": "Offered to {agent}",
  "event.assigned": "{agent} joined the conversation",
  "event.overflowed": "Overflowed from {from} to {to}",
  "event.transfer.requested.warm": "Warm transfer requested to {target}",
  "event.transfer.requested.cold": "Cold transfer requested to {target}",
  "event.transfer.completed": "Transferred from {from} to {target} ({mode})",
  "event.transfer.completed.you_to": "You were transferred to {agent}",
  "event.transfer.completed.you": "You were transferred to another agent",
  "event.transfer.accepted": "{agent} accepted the transfer",
  "event.transfer.cancelled": "Transfer cancelled",
  "event.transfer.cancelled_by": "Transfer cancelled by {agent}",
  "event.transfer.cancelled_because": "Transfer cancelled: {agent} {reason}",
  "event.requeued": "{agent} {reason}: back in the queue",
  "event.closed.you": "Conversation closed by you",
  "event.closed.customer": "Conversation closed by the customer",
  "event.closed.system": "Conversation closed by the system",
  "event.closed.agent": "Conversation closed by {agent}",
  "event.rated": "Rated {score}/5",
  "event.rated.comment": "Rated {score}/5: “{comment}”",
  // context that travels with the customer (agents see these: the console)
  "event.attributes_updated": "Customer attributes changed: {changes}",
  "event.attribute_removed": "{key} removed",
  "event.page_viewed": "Viewed {page}",
  "console.customer": "Customer",
  "console.attributes": "Attributes",
  "console.attributes.none": "No attributes set.",
  "console.pages": "Pages viewed",
  "console.pages.none": "No pages recorded.",
  // --- the agent's desk (issue 12): states, offers, the customer panel, wrap-up (view-state.js) ---
  "state.loading": "…",
  "state.queued": "queued",
  "state.offered": "offered",
  "state.assigned": "assigned",
  "state.transferring": "transferring",
  "state.closed": "closed",
  "state.transferred": "transferred",
  "console.readonly.loading": "Loading…",
  "console.readonly.closed": "This conversation is closed (read-only).",
  "console.readonly.theirs": "Assigned to {agent} (read-only).",
  "console.readonly.waiting": "Not assigned to you ({state}): read-only.",
  "console.readonly.transferred": "You transferred this conversation to {target} (read-only).",
  "console.readonly.transferred.queue": "You transferred this conversation to the {target} queue (read-only).",
  "console.readonly.transferred_now": "You transferred this conversation; {agent} has it now (read-only).",
  "console.readonly.transferred_now.queue": "You transferred this conversation to the {target} queue; {agent} has it now (read-only).",
  "console.readonly.transferred_closed": "You transferred this conversation to {target}; it is closed now (read-only).",
  "console.readonly.transferred_closed.queue": "You transferred this conversation to the {target} queue; it is closed now (read-only).",
  "console.offer.call.voice": "Incoming voice call",
  "console.offer.call.video": "Incoming video call",
  "console.offer.accept": "Accept",
  "console.offer.accept_call": "Answer call",
  "console.offer.decline": "Decline",
  "console.offer.seconds_left": "{seconds} s",
  "console.offer.seconds_left.label": "{seconds} seconds left to answer",
  "console.customer.verified": "Verified customer",
  "console.customer.visitor": "Visitor (not signed in)",
  "console.customer.email": "Email",
  "console.customer.id": "Customer id",
  "console.handled": "Handled before",
  "console.handled.transfer": "{from} → {to} ({mode})",
  "console.handled.pending": "Transfer from {from} waiting for {to}",
  "console.handled.note": "Note: {note}",
  "console.history": "Earlier conversations",
  "console.history.none": "No earlier conversations.",
  "console.history.open": "Open in a column",
  "console.history.loading": "Loading the transcript…",
  "console.history.failed": "Could not load the transcript: {message}",
  "console.history.empty": "No messages.",
  "console.history.agent": "Agent: {agent}",
  "console.history.disposition": "Disposition: {disposition}",
  "console.history.tags": "Tags: {tags}",
  "console.history.csat": "CSAT {score}/5",
  "console.history.csat_comment": "CSAT {score}/5: “{comment}”",
  "console.history.notes": "Internal notes",
  "console.history.consult": "Consult",
  "console.channel_time": "{channel} {duration}",
  "console.calls": "Calls",
  "console.this": "This conversation",
  "console.call.item": "{media} call · {duration}",
  "console.call.ongoing": "{media} call · in progress",
  "console.call.play": "Play recording",
  "console.call.loading": "Loading the recording…",
  "console.call.failed": "Could not load the recording: {message}",
  "console.call.recording": "Recording of the call of {when}",
  "console.wrapup.tags": "Tags (comma-separated, optional)",
  "console.wrapup.tags_placeholder": "refund, vip",
  "console.wrapup.bad_tag": "Tags are 1-40 characters each, without < or >.",
  "console.load.none": "–",
  "widget.launcher.call.ringing": "Calling…",
  "widget.launcher.call.active": "In a call",
  "widget.launcher.call.incoming": "Incoming call — open to answer",
  "event.with_note": "{text}: {note}",
  "event.with_disposition": "{text} — {disposition}",
  "transfer.mode.cold": "cold",
  "transfer.mode.warm": "warm",
  "reason.timeout": "did not answer in time",
  "reason.declined": "declined",
  "reason.taken": "was taken",
  "reason.cancelled": "was cancelled",

  // --- call events ----------------------------------------------------------------------------
  "call.requested.voice": "{who} asked for a voice call",
  "call.requested.video": "{who} asked for video",
  "call.requested.screen": "{who} asked for screen sharing",
  "call.accepted.voice": "Voice call started",
  "call.accepted.video": "Video started",
  "call.accepted.screen": "Screen share started",
  "call.declined": "{who} declined the {media} request",
  "call.withdrawn": "{who} withdrew the {media} request",
  "call.video_on": "{who} turned the camera on",
  "call.video_off": "{who} turned the camera off",
  "call.screen_on": "{who} started sharing the screen",
  "call.screen_off": "{who} stopped sharing the screen",
  "call.held": "Call on hold",
  "call.resumed": "Call resumed",
  "call.leg_lost": "{who}'s call connection dropped",
  "call.leg_lost.grace": "{who}'s call connection dropped (waiting up to {duration})",
  "call.leg_lost.you": "Your call connection dropped",
  "call.leg_lost.you_grace": "Your call connection dropped (waiting up to {duration})",
  "call.reconnected": "{who} reconnected to the call",
  "call.transferred": "Call transferred",
  "call.transferred.to": "Call transferred to {agent}",
  "call.monitored.listen": "{who} (supervisor) is listening to the call",
  "call.monitored.whisper": "{who} (supervisor) is whispering to the agent",
  "call.monitored.barge": "{who} (supervisor) barged into the call",
  "call.monitored.other": "{who} (supervisor) is monitoring the call ({mode})",
  "call.monitor_ended": "{who} (supervisor) stopped monitoring the call",
  "call.monitor_ended.why": "{who} (supervisor) stopped monitoring the call ({why})",
  "call.monitor_ended.disconnected": "their page closed",
  "call.monitor_ended.connection_lost": "connection lost",
  "call.supervisor_joined": "{who} (supervisor) joined the call",
  "call.supervisor_joined.customer": "A supervisor joined the call",
  "call.supervisor_joined.customer_named": "A supervisor, {name}, joined the call",
  "call.supervisor_left": "{who} (supervisor) left the call",
  "call.supervisor_left.customer": "The supervisor left the call",
  "call.ended": "Call ended",
  "call.ended.after": "Call ended after {duration}",
  "call.ended.reason": "{text} ({reason})",
  "call.end_reason.hangup": "hung up",
  "call.end_reason.timeout": "connection lost",
  "call.end_reason.shutdown": "server restarting",
  "call.end_reason.conversation_closed": "conversation closed",
  "call.other": "Call update",

  // --- the call bar (call-ui.js) --------------------------------------------------------------
  "callbar.accept": "Accept",
  "callbar.decline": "Decline",
  "callbar.cancel": "Cancel",
  "callbar.call": "Call",
  "callbar.ask_video": "Ask for video",
  "callbar.ask_screen.agent": "Ask to see their screen",
  "callbar.ask_screen.customer": "Ask to see the agent's screen",
  "callbar.camera_on": "Camera on",
  "callbar.camera_off": "Camera off",
  "callbar.video": "Video",
  "callbar.video_stop": "Stop video",
  "callbar.video.title": "Turn your camera on and ask the agent for video",
  "callbar.video_stop.title": "Turn your camera off",
  "callbar.share_screen": "Share screen",
  "callbar.stop_sharing": "Stop sharing",
  "callbar.mute": "Mute",
  "callbar.unmute": "Unmute",
  "callbar.hold": "Hold",
  "callbar.resume": "Resume",
  "callbar.hangup": "Hang up",
  "callbar.tile.camera": "Camera",
  "callbar.tile.screen": "Screen",
  "callbar.tile.self": "You",
  "callbar.what.voice": "a call",
  "callbar.what.video": "video",
  "callbar.what.screen": "screen sharing",
  "callbar.what.other": "the request",
  "callbar.they": "They",
  "callbar.the_agent": "The agent",
  "callbar.the_customer": "The customer",
  "callbar.you_withdrew": "You withdrew your request for {what}.",
  "callbar.you_declined": "Declined {what}.",
  "callbar.they_withdrew": "{name} withdrew the request for {what}.",
  "callbar.they_declined": "{name} declined {what}.",
  "callbar.ended": "Call ended.",
  "callbar.incoming.voice": "{who} is calling.",
  "callbar.incoming.voice_video": "{who} is calling (video).",
  "callbar.incoming.video": "{who} asks for video: accept to turn your camera on.",
  "callbar.incoming.screen": "{who} asks you to share your screen.",
  "callbar.incoming.other": "{who} asks for {what}.",
  "callbar.outgoing.video.customer": "Asked the agent for video — waiting for an answer…",
  "callbar.outgoing.video.agent": "Asked the customer for video — waiting for an answer…",
  "callbar.outgoing.screen.customer": "Asked the agent to share the screen — waiting for an answer…",
  "callbar.outgoing.screen.agent": "Asked the customer to share the screen — waiting for an answer…",
  "callbar.supervisor.listen": "Supervisor {name} is listening",
  "callbar.supervisor.whisper": "Supervisor {name} is whispering to you",
  "callbar.supervisor.barge": "Supervisor {name} barged in",
  "callbar.supervisor.other": "Supervisor {name}: {mode}",
  "callbar.supervisor.customer": "A supervisor joined the call",
  "callbar.supervisor.customer_named": "{name}, a supervisor, joined the call",
  "callbar.status.calling.customer": "Calling… waiting for an agent to answer",
  "callbar.status.calling.agent": "Calling the customer…",
  "callbar.status.incoming": "Incoming call",
  "callbar.status.on_hold": "On hold",
  "callbar.status.connecting": "Connecting…",
  "callbar.status.waiting.customer": "On hold — connecting you to an agent…",
  "callbar.status.waiting.agent": "Waiting for the customer to reconnect…",
  "callbar.status.in_call": "In call {time}",
  "callbar.status.in_call_muted": "In call {time} · muted",
};

/** Simplified Chinese (mainland usage). */
const zhCN = {
  "widget.title": "在线客服",
  "widget.hide": "收起对话",
  "widget.minimise": "最小化对话窗口",
  "widget.unread": "未读消息：{count}",
  "widget.status.connecting": "正在连接…",
  "widget.status.online": "在线",
  "widget.status.reconnecting": "正在重新连接…",
  "widget.status.unreachable": "无法连接到服务器，正在重试…",
  "widget.status.refused": "无法连接：{message}",
  "widget.call": "语音通话",
  "widget.call.title": "与我们语音通话",
  "widget.video_call": "视频通话",
  "widget.video_call.title": "与我们视频通话（将打开摄像头）",
  "widget.end": "结束对话",
  "widget.intro": "您好！请给我们留言，空闲的客服会尽快回复您。",
  "widget.topic": "咨询类别",
  "widget.start.placeholder": "请问有什么可以帮您？（选填）",
  "widget.name.placeholder": "您的称呼（选填）",
  "widget.start": "开始对话",
  "widget.message.placeholder": "输入消息…",
  "widget.message.label": "消息",
  "widget.send": "发送",
  "widget.log.label": "对话记录",
  "widget.agent": "客服",
  "widget.typing": "{name}正在输入…",
  "widget.position": "您正在排队，当前排在第 {position} 位",
  "widget.position.wait": "您正在排队，当前排在第 {position} 位 · 预计等待 {wait}",
  "widget.waiting": "正在等待客服接入…",
  "widget.rating.question": "您对本次服务满意吗？",
  "widget.rating.label": "评分",
  "widget.rating.star": "{score} 星（满分 5 星）",
  "widget.rating.comment": "还有什么想告诉我们的吗？（选填）",
  "widget.rating.send": "提交评价",
  "widget.rating.thanks": "感谢您的反馈！",
  "widget.new_chat": "开始新的对话",

  "error.timeout": "服务器没有响应，请重试。",
  "error.not_connected": "尚未连接，请稍后重试。",
  "error.unavailable": "无法连接到服务器，请稍后重试。",
  "error.rate_limited": "操作过于频繁，请稍候再试。",
  "error.too_large": "内容过长，无法发送。",
  "error.forbidden": "此操作不被允许。",
  "error.not_found": "该对话已不存在。",
  "error.media": "无法使用摄像头或麦克风：{message}",
  "error.other": "出现问题：{message}",

  "receipt.sending": "发送中…",
  "receipt.sent": "已发送",
  "receipt.read": "已读",
  "receipt.not_sent": "发送失败：{error}",
  "receipt.retry": "重试",

  "channel.chat": "文字聊天",
  "channel.voice": "语音",
  "channel.video": "视频",
  "channel.screen": "屏幕共享",
  "media.chat": "文字",
  "media.voice": "语音",
  "media.video": "视频",
  "media.screen": "屏幕共享",

  "who.you": "您",
  "who.customer": "客户",
  "who.agent": "客服",
  "who.someone": "有人",
  "who.an_agent": "一位客服",
  "who.anyone": "他人",
  "who.queue": "{queue} 队列",

  "event.started": "对话已开始",
  "event.started.detail": "对话已开始（{channel}，队列：{queue}）",
  "event.started.detail_from": "对话已开始（{channel}，队列：{queue}），来自“{where}”",
  "event.queued": "已进入 {queue} 队列",
  "event.queued.customer": "正在等待客服接入…",
  "event.offered": "已推送给{agent}",
  "event.assigned": "{agent}加入了对话",
  "event.overflowed": "已从 {from} 队列溢出到 {to} 队列",
  "event.transfer.requested.warm": "已请求转接给{target}（咨询转接）",
  "event.transfer.requested.cold": "已请求转接给{target}（直接转接）",
  "event.transfer.completed": "已从{from}转接给{target}（{mode}）",
  "event.transfer.completed.you_to": "已为您转接给{agent}",
  "event.transfer.completed.you": "已为您转接给另一位客服",
  "event.transfer.accepted": "{agent}接受了转接",
  "event.transfer.cancelled": "转接已取消",
  "event.transfer.cancelled_by": "{agent}取消了转接",
  "event.transfer.cancelled_because": "转接已取消：{agent}{reason}",
  "event.requeued": "{agent}{reason}，对话已重新排队",
  "event.closed.you": "您结束了对话",
  "event.closed.customer": "客户结束了对话",
  "event.closed.system": "对话已由系统结束",
  "event.closed.agent": "{agent}结束了对话",
  "event.rated": "评分：{score}/5",
  "event.rated.comment": "评分：{score}/5，“{comment}”",
  "event.attributes_updated": "客户属性已更改：{changes}",
  "event.attribute_removed": "{key} 已删除",
  "event.page_viewed": "浏览了 {page}",
  "console.customer": "客户",
  "console.attributes": "属性",
  "console.attributes.none": "未设置属性。",
  "console.pages": "浏览过的页面",
  "console.pages.none": "没有页面记录。",
  "state.loading": "…",
  "state.queued": "排队中",
  "state.offered": "待接受",
  "state.assigned": "处理中",
  "state.transferring": "转接中",
  "state.closed": "已结束",
  "state.transferred": "已转出",
  "console.readonly.loading": "加载中…",
  "console.readonly.closed": "此对话已结束（只读）。",
  "console.readonly.theirs": "已分配给{agent}（只读）。",
  "console.readonly.waiting": "未分配给你（{state}）：只读。",
  "console.readonly.transferred": "你已将此对话转接给{target}（只读）。",
  "console.readonly.transferred.queue": "你已将此对话转接到{target}队列（只读）。",
  "console.readonly.transferred_now": "你已转出此对话，现由{agent}处理（只读）。",
  "console.readonly.transferred_now.queue": "你已将此对话转接到{target}队列，现由{agent}处理（只读）。",
  "console.readonly.transferred_closed": "你已将此对话转接给{target}，对话已结束（只读）。",
  "console.readonly.transferred_closed.queue": "你已将此对话转接到{target}队列，对话已结束（只读）。",
  "console.offer.call.voice": "语音来电",
  "console.offer.call.video": "视频来电",
  "console.offer.accept": "接受",
  "console.offer.accept_call": "接听",
  "console.offer.decline": "拒绝",
  "console.offer.seconds_left": "{seconds} 秒",
  "console.offer.seconds_left.label": "剩余 {seconds} 秒可接受",
  "console.customer.verified": "已验证的客户",
  "console.customer.visitor": "访客（未登录）",
  "console.customer.email": "邮箱",
  "console.customer.id": "客户编号",
  "console.handled": "此前的处理人",
  "console.handled.transfer": "{from} → {to}（{mode}）",
  "console.handled.pending": "{from}发起的转接，等待{to}",
  "console.handled.note": "备注：{note}",
  "console.history": "历史对话",
  "console.history.none": "没有历史对话。",
  "console.history.open": "在新栏中打开",
  "console.history.loading": "正在加载对话记录…",
  "console.history.failed": "无法加载对话记录：{message}",
  "console.history.empty": "没有消息。",
  "console.history.agent": "坐席：{agent}",
  "console.history.disposition": "处理结果：{disposition}",
  "console.history.tags": "标签：{tags}",
  "console.history.csat": "满意度 {score}/5",
  "console.history.csat_comment": "满意度 {score}/5：“{comment}”",
  "console.history.notes": "内部备注",
  "console.history.consult": "转接咨询",
  "console.channel_time": "{channel} {duration}",
  "console.calls": "通话",
  "console.this": "本次对话",
  "console.call.item": "{media}通话 · {duration}",
  "console.call.ongoing": "{media}通话 · 进行中",
  "console.call.play": "播放录音",
  "console.call.loading": "正在加载录音…",
  "console.call.failed": "无法加载录音：{message}",
  "console.call.recording": "{when}的通话录音",
  "console.wrapup.tags": "标签（用逗号分隔，可选）",
  "console.wrapup.tags_placeholder": "退款, VIP",
  "console.wrapup.bad_tag": "每个标签 1-40 个字符，不含 < 或 >。",
  "console.load.none": "–",
  "widget.launcher.call.ringing": "正在呼叫…",
  "widget.launcher.call.active": "通话中",
  "widget.launcher.call.incoming": "来电，打开即可接听",
  "event.with_note": "{text}：{note}",
  "event.with_disposition": "{text}（{disposition}）",
  "transfer.mode.cold": "直接转接",
  "transfer.mode.warm": "咨询转接",
  "reason.timeout": "未及时应答",
  "reason.declined": "已拒绝",
  "reason.taken": "已被他人接手",
  "reason.cancelled": "已取消",

  "call.requested.voice": "{who}发起了语音通话请求",
  "call.requested.video": "{who}请求视频通话",
  "call.requested.screen": "{who}请求共享屏幕",
  "call.accepted.voice": "语音通话已开始",
  "call.accepted.video": "视频已开始",
  "call.accepted.screen": "屏幕共享已开始",
  "call.declined": "{who}拒绝了{media}请求",
  "call.withdrawn": "{who}撤回了{media}请求",
  "call.video_on": "{who}打开了摄像头",
  "call.video_off": "{who}关闭了摄像头",
  "call.screen_on": "{who}开始共享屏幕",
  "call.screen_off": "{who}停止了屏幕共享",
  "call.held": "通话已保持",
  "call.resumed": "通话已恢复",
  "call.leg_lost": "{who}的通话连接已断开",
  "call.leg_lost.grace": "{who}的通话连接已断开（最多等待 {duration}）",
  "call.leg_lost.you": "您的通话连接已断开",
  "call.leg_lost.you_grace": "您的通话连接已断开（最多等待 {duration}）",
  "call.reconnected": "{who}已重新连接通话",
  "call.transferred": "通话已转接",
  "call.transferred.to": "通话已转接给{agent}",
  "call.monitored.listen": "{who}（主管）正在监听通话",
  "call.monitored.whisper": "{who}（主管）正在对客服耳语",
  "call.monitored.barge": "{who}（主管）已强插进入通话",
  "call.monitored.other": "{who}（主管）正在监控通话（{mode}）",
  "call.monitor_ended": "{who}（主管）已停止监控通话",
  "call.monitor_ended.why": "{who}（主管）已停止监控通话（{why}）",
  "call.monitor_ended.disconnected": "其页面已关闭",
  "call.monitor_ended.connection_lost": "连接中断",
  "call.supervisor_joined": "{who}（主管）加入了通话",
  "call.supervisor_joined.customer": "一位主管加入了通话",
  "call.supervisor_joined.customer_named": "主管{name}加入了通话",
  "call.supervisor_left": "{who}（主管）离开了通话",
  "call.supervisor_left.customer": "主管已离开通话",
  "call.ended": "通话已结束",
  "call.ended.after": "通话已结束，时长 {duration}",
  "call.ended.reason": "{text}（{reason}）",
  "call.end_reason.hangup": "已挂断",
  "call.end_reason.timeout": "连接中断",
  "call.end_reason.shutdown": "服务器正在重启",
  "call.end_reason.conversation_closed": "对话已结束",
  "call.other": "通话状态已更新",

  "callbar.accept": "接受",
  "callbar.decline": "拒绝",
  "callbar.cancel": "取消",
  "callbar.call": "通话",
  "callbar.ask_video": "请求视频",
  "callbar.ask_screen.agent": "请求查看对方屏幕",
  "callbar.ask_screen.customer": "请求查看客服的屏幕",
  "callbar.camera_on": "打开摄像头",
  "callbar.camera_off": "关闭摄像头",
  "callbar.video": "视频",
  "callbar.video_stop": "关闭视频",
  "callbar.video.title": "打开您的摄像头，并邀请客服开启视频",
  "callbar.video_stop.title": "关闭您的摄像头",
  "callbar.share_screen": "共享屏幕",
  "callbar.stop_sharing": "停止共享",
  "callbar.mute": "静音",
  "callbar.unmute": "取消静音",
  "callbar.hold": "保持",
  "callbar.resume": "恢复",
  "callbar.hangup": "挂断",
  "callbar.tile.camera": "摄像头",
  "callbar.tile.screen": "屏幕",
  "callbar.tile.self": "我",
  "callbar.what.voice": "通话请求",
  "callbar.what.video": "视频请求",
  "callbar.what.screen": "屏幕共享请求",
  "callbar.what.other": "该请求",
  "callbar.they": "对方",
  "callbar.the_agent": "客服",
  "callbar.the_customer": "客户",
  "callbar.you_withdrew": "您已撤回{what}。",
  "callbar.you_declined": "已拒绝{what}。",
  "callbar.they_withdrew": "{name}撤回了{what}。",
  "callbar.they_declined": "{name}拒绝了{what}。",
  "callbar.ended": "通话已结束。",
  "callbar.incoming.voice": "{who}来电。",
  "callbar.incoming.voice_video": "{who}发起视频来电。",
  "callbar.incoming.video": "{who}请求视频：接受后将打开您的摄像头。",
  "callbar.incoming.screen": "{who}请求您共享屏幕。",
  "callbar.incoming.other": "{who}发来{what}。",
  "callbar.outgoing.video.customer": "已邀请客服开启视频，等待回应…",
  "callbar.outgoing.video.agent": "已邀请客户开启视频，等待回应…",
  "callbar.outgoing.screen.customer": "已请求客服共享屏幕，等待回应…",
  "callbar.outgoing.screen.agent": "已请求客户共享屏幕，等待回应…",
  "callbar.supervisor.listen": "主管{name}正在监听",
  "callbar.supervisor.whisper": "主管{name}正在对您耳语",
  "callbar.supervisor.barge": "主管{name}已强插进入通话",
  "callbar.supervisor.other": "主管{name}：{mode}",
  "callbar.supervisor.customer": "一位主管加入了通话",
  "callbar.supervisor.customer_named": "主管{name}加入了通话",
  "callbar.status.calling.customer": "正在呼叫…等待客服接听",
  "callbar.status.calling.agent": "正在呼叫客户…",
  "callbar.status.incoming": "来电",
  "callbar.status.on_hold": "通话保持中",
  "callbar.status.connecting": "正在连接…",
  "callbar.status.waiting.customer": "请稍候，正在为您接通客服…",
  "callbar.status.waiting.agent": "正在等待客户重新连接…",
  "callbar.status.in_call": "通话中 {time}",
  "callbar.status.in_call_muted": "通话中 {time} · 已静音",
};

const CATALOGUES = new Map([
  ["en", en],
  ["zh-CN", zhCN],
]);

/** The keys every catalogue should have (English is the reference). */
export const MESSAGE_KEYS = Object.freeze(Object.keys(en));

/** The locales Segue ships (plus any added with addLocale). */
export function locales() {
  return [...CATALOGUES.keys()];
}

/**
 * Add (or extend) a locale: `messages` maps catalogue keys to text with `{name}` placeholders.
 * Keys it leaves out fall back to English. Unknown keys are refused (a typo would never show).
 */
export function addLocale(locale, messages) {
  if (typeof locale !== "string" || !locale.trim()) throw new TypeError("addLocale: locale must be a language tag such as \"fr\"");
  const unknown = Object.keys(messages ?? {}).filter((key) => !(key in en));
  if (unknown.length) throw new TypeError(`addLocale: unknown message keys ${unknown.join(", ")} (see MESSAGE_KEYS)`);
  CATALOGUES.set(locale, { ...(CATALOGUES.get(locale) ?? {}), ...messages });
}

/**
 * The shipped locale that best serves a language tag (or list of tags, best first, as in
 * navigator.languages): an exact match, else the same language ("zh", "zh-Hans", "zh-SG" →
 * "zh-CN"; "en-GB" → "en"), else "en". Traditional-script Chinese (zh-TW, zh-HK, zh-Hant) is
 * not served by zh-CN.
 */
export function resolveLocale(requested) {
  const tags = (Array.isArray(requested) ? requested : [requested]).filter((x) => typeof x === "string" && x);
  for (const tag of tags) {
    if (CATALOGUES.has(tag)) return tag;
    const lower = tag.toLowerCase();
    const exact = [...CATALOGUES.keys()].find((k) => k.toLowerCase() === lower);
    if (exact) return exact;
    const language = lower.split("-")[0];
    if (language === "zh") {
      if (/-(tw|hk|mo|hant)\b/.test(lower)) continue;
      return "zh-CN";
    }
    const sameLanguage = [...CATALOGUES.keys()].find((k) => k.toLowerCase().split("-")[0] === language);
    if (sameLanguage) return sameLanguage;
  }
  return "en";
}

/** The browser's preferred locale among those shipped ("en" without a browser). */
export function browserLocale() {
  if (typeof navigator === "undefined") return "en";
  return resolveLocale([...(navigator.languages ?? []), navigator.language]);
}

function interpolate(text, params) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => (params && name in params ? String(params[name] ?? "") : whole));
}

/**
 * A translate function for one locale: `t(key, params)`. `overrides` (key → text) replace
 * catalogue entries for this translator only (a page's own wording). Also carries
 * `t.locale`, `t.has(key)`, `t.time(ts)` and `t.duration(seconds)`.
 */
export function translator(locale = "en", overrides = {}) {
  const code = CATALOGUES.has(locale) ? locale : resolveLocale(locale);
  const unknown = Object.keys(overrides ?? {}).filter((key) => !(key in en));
  if (unknown.length) throw new TypeError(`messages: unknown message keys ${unknown.join(", ")} (see MESSAGE_KEYS in /sdk/i18n.js)`);
  const catalogue = { ...en, ...CATALOGUES.get(code), ...(overrides ?? {}) };
  const t = (key, params) => interpolate(catalogue[key] ?? key, params);
  t.locale = code;
  t.has = (key) => key in catalogue;
  t.time = (ts) => formatTime(ts, code);
  t.duration = (seconds) => formatDuration(seconds, code);
  return t;
}

/** "14:05" for today, "3 Mar 14:05" (the locale's own order) otherwise. */
function formatTime(ts, locale) {
  if (!ts) return "";
  const date = new Date(ts);
  const now = new Date();
  const time = date.toLocaleTimeString(locale, { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === now.toDateString()) return time;
  return date.toLocaleString(locale, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" });
}

/** 75 → "1 min, 15 sec" / "1分钟15秒" (Intl.DurationFormat, else unit number formats). */
function formatDuration(seconds, locale) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const parts = s < 60 ? { seconds: s } : s < 3600 ? { minutes: Math.floor(s / 60), seconds: s % 60 } : { hours: Math.floor(s / 3600), minutes: Math.floor(s / 60) % 60 };
  for (const key of Object.keys(parts)) if (!parts[key] && Object.keys(parts).length > 1) delete parts[key];
  if (typeof Intl.DurationFormat === "function") return new Intl.DurationFormat(locale, { style: "short" }).format(parts);
  const unit = { hours: "hour", minutes: "minute", seconds: "second" };
  return Object.entries(parts)
    .map(([key, value]) => new Intl.NumberFormat(locale, { style: "unit", unit: unit[key], unitDisplay: "short" }).format(value))
    .join(" ");
}

/** English, for callers that pass no translator (the agent console and the wallboard for now). */
export const english = translator("en");
