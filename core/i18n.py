"""What the bot says, in English and Russian. Both platforms use these texts."""

from __future__ import annotations

from core.errors import OneAIError

DEFAULT_LANGUAGE = "en"

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "start": (
            "👋 Hi, {name}! I'm OneAI: chat with {models} AI models right here.\n\n"
            "Your plan: {plan}.\n\n"
            "Just write a message to start. Edit a message to get a new answer, "
            "press 🔄 to regenerate, ◀ ▶ to flip through versions, reply to an older "
            "answer to branch from it.\n\n/help lists every command."
        ),
        "help": (
            "Commands:\n"
            "/new — start a new conversation\n"
            "/model — pick the AI model\n"
            "/mode — chat mode: translator, coder, editor, …\n"
            "/history — your conversations\n"
            "/rename TITLE — rename this conversation\n"
            "/export — this conversation as a Markdown file\n"
            "/usage — your quotas\n"
            "/settings — system prompt, default model, language\n"
            "/search QUESTION — ask with a web search (where offered)\n"
            "/image PROMPT — generate an image\n"
            "/plan — plans and upgrades\n"
            "/link — one account on Telegram and Discord\n"
            "/cancel — stop what is running or being set up\n\n"
            "Edit a sent message to get a new answer; reply to an older answer to "
            "continue from there. Voice notes are transcribed, and documents (PDF, "
            "DOCX, text) are read: the caption is the question."
        ),
        "cmd.start": "Welcome and your plan",
        "cmd.help": "How to use the bot",
        "cmd.new": "Start a new conversation",
        "cmd.model": "Pick the AI model",
        "cmd.history": "Your conversations",
        "cmd.rename": "Rename this conversation",
        "cmd.export": "Export this conversation",
        "cmd.usage": "Your quotas",
        "cmd.settings": "System prompt, model, language",
        "cmd.image": "Generate an image",
        "cmd.plan": "Plans and upgrades",
        "cmd.cancel": "Stop what is running",
        "new": "🆕 New conversation. Send your first message.",
        "busy": "⏳ Still answering — press Stop first.",
        "queued": "⏳ Queued: I'll answer this right after the current answer.",
        "stopped": "⏹ Stopped.",
        "cut": "⚠️ This answer was cut off by a restart. Press 🔄 to try again.",
        "failed": "⚠️ {reason}",
        "empty_answer": "The model returned an empty answer.",
        "stop": "⏹ Stop",
        "regenerate": "🔄 Regenerate",
        "not_yours": "This button is not for you.",
        "stale_button": "This button no longer works.",
        "unknown_command": "I don't know that command. /help lists what I can do.",
        "unsupported": "I can read text, photos, documents and voice notes only. Please send your question as one of those.",
        "no_vision": (
            "{model} can't look at images. Pick a model that can with /model, "
            "or describe the picture in words."
        ),
        "model.header": "Current model: {model}\nPick one (🔒 needs a bigger plan):",
        "model.set": "✅ Model: {model}",
        "model.locked": "🔒 {model} needs the {plan} plan. /plan shows how to upgrade.",
        "quota.small_messages": "Small messages",
        "quota.large_messages": "Large messages",
        "quota.image_generation": "Images",
        "usage.header": "📊 Plan: {plan}",
        "usage.line": "{label}: {bar} {used}/{limit} · {remaining} left · resets {when}",
        "usage.rolling": "3 h after next use",
        "history.empty": "No conversations yet. Just send a message.",
        "history.header": "🗂 Your conversations (page {page}/{pages}):",
        "history.resume": "▶ Resume",
        "history.delete": "🗑 Delete",
        "history.resumed": "▶ Continuing “{title}”.",
        "history.export": "📄 Export…",
        "help.discord": (
            "In DMs just write; in a server, /chat PROMPT opens a thread and every message "
            "there continues it (elsewhere mention the bot).\n"
            "/chat PROMPT — ask the model\n"
            "/new — start a new conversation\n"
            "/model — pick the AI model\n"
            "/mode — chat mode: translator, coder, editor, …\n"
            "/history — your conversations\n"
            "/rename TITLE — rename this conversation\n"
            "/export — this conversation as a Markdown file\n"
            "/usage — your quotas\n"
            "/settings — system prompt, default model, language\n"
            "/search QUESTION — ask with a web search (where offered)\n"
            "/image PROMPT — generate an image\n"
            "/plan — plans and upgrades\n"
            "/link — one account on Telegram and Discord\n"
            "/cancel — stop the answer being written\n\n"
            "Edit your message to get a new answer; under an answer 🔄 writes another "
            "version and ◀ n/m ▶ pages through them. Voice messages are transcribed, "
            "and attached documents (PDF, DOCX, text) are read."
        ),
        "history.deleted": "🗑 Deleted “{title}”.",
        "rename.usage": "Usage: /rename New title",
        "rename.done": "✏️ Renamed to “{title}”.",
        "nothing": "There is no conversation yet.",
        "settings.header": (
            "⚙️ Settings\n\nSystem prompt: {prompt}\nDefault model: {model}\nLanguage: {language}"
        ),
        "settings.prompt": "✍️ System prompt",
        "settings.prompt_clear": "🧹 Clear prompt",
        "settings.model": "🤖 Default model",
        "settings.language": "🌐 Language",
        "settings.ask_prompt": "Send the system prompt to use in new messages (or /cancel).",
        "settings.prompt_saved": "✅ System prompt saved.",
        "settings.prompt_cleared": "✅ System prompt cleared.",
        "settings.language_set": "✅ Language: English",
        "settings.none": "none",
        "cancel.done": "Cancelled.",
        "cancel.nothing": "Nothing to cancel.",
        "cmd.link": "One account on Telegram and Discord",
        "link.code": (
            "🔗 Your link code: {code}\n\n"
            "On your other platform, send the bot /link {code} to join both accounts "
            "into one: one plan, one quota, all conversations. The code works once, "
            "for {minutes} minutes."
        ),
        "link.header": "🔗 Linked accounts:",
        "link.identity": "• {platform}{name}",
        "link.here": " (here)",
        "link.unlink": "Unlink {platform}",
        "link.confirm_unlink": (
            "Unlink {platform}? This account keeps its plan, quotas and conversations; "
            "{platform} starts over as a separate free account."
        ),
        "link.yes_unlink": "Yes, unlink {platform}",
        "link.keep": "Keep linked",
        "link.unlinked": "✅ {platform} is unlinked and has its own free account now.",
        "link.done": (
            "✅ Linked: {platforms} share one account now. Plan: {plan}. "
            "Conversations: {conversations}."
        ),
        "link.ended_recurring": (
            "The other account's {plan} subscription still renews with its payment "
            "provider: cancel it there if you don't need it any more."
        ),
        "notice.account.linked": (
            "🔗 Your accounts are linked now: one plan ({plan}), one quota, all "
            "conversations. /link shows them."
        ),
        "notice.account.unlinked": (
            "🔓 This account was unlinked from your other accounts and starts over on "
            "the {plan} plan."
        ),
        "error.link_code_malformed": (
            "A link code looks like ABCD-EFGH: 8 letters and digits. Send /link on your "
            "other platform to get one."
        ),
        "error.link_code_invalid": (
            "This code is wrong, used or expired. {tries_left} more wrong codes lock "
            "linking for an hour."
        ),
        "error.link_locked": "Too many wrong codes. You can link again after {until}.",
        "error.link_own_code": (
            "That is the code shown here. Enter it on your other platform: /link CODE there."
        ),
        "error.link_same_platform": (
            "Both accounts have a {platform} identity, and one account can hold only one "
            "{platform} identity. Unlink one of them first (/link shows how)."
        ),
        "error.link_already_linked": "These accounts are linked already.",
        "error.link_conflict": "Your accounts changed meanwhile. Please try again.",
        "error.link_not_linked": "{platform} is not linked to this account.",
        "error.link_last_identity": "This is your only account: there is nothing to unlink.",
        "error.link_busy": (
            "⏳ An answer is still being written. Let it finish or press Stop, then link again."
        ),
        "image.usage": "Usage: /image a watercolor fox in the snow",
        "image.failed": "⚠️ The image could not be generated: {reason}",
        "image.no_image": "The model did not return an image. Try another prompt.",
        "plan.soon": "Paying for an upgrade in the chat is not available on this bot yet.",
        "plan.header": "💳 Your plan: {plan}",
        "plan.tier": (
            "{mark}{plan}: {small} small and {large} large messages a month, "
            "{images} images every 3 hours"
        ),
        "cmd.cancel_subscription": "Cancel your subscription",
        "cmd.paysupport": "Questions about a payment",
        "plan.status": "Status: {status} · until {until}",
        "plan.status.active": "active",
        "plan.status.cancelled": "cancelled, access stays until the end of the period",
        "plan.status.past_due": "renewal payment overdue",
        "plan.status.unpaid": "unpaid",
        "plan.renews": " · renews automatically",
        "plan.buy": "Upgrade or extend:",
        "plan.nothing_to_buy": "Plans are not sold on this bot yet.",
        "plan.enterprise": "Enterprise is priced individually: {contact}.",
        "buy.stars": "⭐ {plan} · {price} / 30 days",
        "buy.stars_monthly": "⭐ {plan} · {price} a month, renews",
        "buy.provider": "💳 {plan} · {price} / 30 days",
        "buy.yookassa": "💳 {plan} · {price} / 30 days (card, YooKassa)",
        "buy.razorpay": "💳 {plan} · {price} a month (Razorpay)",
        "buy.discord_sku": "💎 {plan} · Discord subscription",
        "buy.link": "{plan}: {price}. Pay on the provider's page; the plan switches on as soon as the payment arrives.",
        "buy.monthly_link": "{plan}: {price} a month in Telegram Stars, renewed every 30 days until you cancel (/cancel_subscription).",
        "buy.open": "Pay {price}",
        "buy.failed": "The payment could not be started. Please try again in a minute.",
        "buy.unavailable": "This way of paying is not available any more. Open /plan again.",
        "invoice.title": "OneAI {plan}",
        "invoice.description": "{plan} for 30 days: {small} small and {large} large messages a month, {images} images every 3 hours.",
        "invoice.label": "{plan}, 30 days",
        "pay.error.unknown_order": "This invoice is no longer valid. Open /plan for a new one.",
        "pay.error.not_for_sale": "This plan is not sold any more. Open /plan.",
        "pay.error.price_changed": "The price has changed. Open /plan for a new invoice.",
        "pay.error.banned": "Payments are not available for this account.",
        "pay.error.busy": "We could not check this payment in time. Please try again.",
        "pay.unknown": "We received your payment but could not match it to an order. Please write to /paysupport; nothing is lost.",
        "cancel_sub.none": "You have no subscription to cancel.",
        "cancel_sub.already": "Your subscription is already cancelled; {plan} stays until {until}.",
        "cancel_sub.failed": "The payment provider did not confirm the cancellation. Please try again later.",
        "cancel_sub.in_telegram": "Your subscription renews through Telegram Stars. Cancel it in Telegram: /cancel_subscription in the bot's chat there.",
        "cancel_sub.in_discord": "Your subscription is billed by Discord. Cancel it in Discord: User Settings → Subscriptions.",
        "paysupport": "Questions about a payment or a refund? Write to {contact} with the date and amount of the payment. Your plan and its end date: /plan.",
        "notice.plan.activated": "✅ {plan} is active until {until}. Your quotas start fresh: /usage",
        "notice.plan.renewed": "🔄 {plan} is extended until {until}.",
        "notice.plan.downgraded": "Your plan is now {plan}, until {until}. /usage shows the new limits.",
        "notice.plan.cancelled": "Your {plan} subscription is cancelled. It stays active until {until}.",
        "notice.plan.expired": "Your {old_plan} plan has ended; you are on {plan} now. /plan to come back.",
        "notice.plan.refunded": "Your {old_plan} payment was refunded; you are on {plan} now.",
        "notice.plan.refunded_back": "Your {old_plan} payment was refunded; you are back on {plan} until {until}.",
        "notice.plan.payment_refunded": "Your payment of {price} was refunded.",
        "notice.plan.reminder": "⏰ {plan} ends on {until}. /plan to extend it.",
        "notice.plan.reminder_renews": "⏰ {plan} renews on {until}.",
        "notice.plan.past_due": "⚠️ The renewal payment for {plan} did not go through; it will be retried. {plan} stays until {until}.",
        "notice.plan.unpaid": "⚠️ {plan} could not be renewed: the payments failed. It ends on {until}.",
        "notice.plan.payment_unused": "We received {price} for {plan}, but your current plan already gives more, so nothing changed. Write to /paysupport and we will refund it.",
        "pay.error.lower_plan": "Your current plan already includes this one.",
        "pay.error.already_renewing": "You already have a subscription that renews. Cancel it first: /cancel_subscription.",
        "blocked": "Your access to this service has been suspended.",
        # -- administration (core/admin) --
        "cmd.admin": "Administration",
        "none": "none",
        "admin.menu": "🛠 Administration",
        "admin.button.stats": "📊 Stats",
        "admin.button.person": "👤 Find a person",
        "admin.button.models": "🤖 Models",
        "admin.button.refresh": "🔄 Refresh the catalog",
        "admin.button.audit": "📜 Audit log",
        "admin.button.grant": "🎁 Give a plan",
        "admin.button.revoke": "↩️ Take the plan away",
        "admin.button.reset": "♻️ Reset quotas",
        "admin.button.ban": "🚫 Ban",
        "admin.button.unban": "✅ Unban",
        "admin.button.disable": "⛔ Turn off",
        "admin.button.enable": "✅ Turn on",
        "admin.button.newer": "◀ Newer",
        "admin.button.older": "Older ▶",
        "admin.ask.person": "Send our user id, telegram:ID, discord:ID or @username (or /cancel).",
        "admin.ask.days": "For how many days (1 to {most})?",
        "admin.ask.reason": "Why? The reason goes to the audit log (or send - for none).",
        "admin.button.broadcast": "📣 Broadcast",
        "admin.button.back": "« Menu",
        "admin.button.card": "« Back to the card",
        "admin.button.yes": "✅ Yes, do it",
        "admin.button.no": "✖ No",
        "admin.button.days": "{days} days",
        "admin.button.refund": "💸 Refund {amount} ({at})",
        "admin.ask.plan": "Which plan for #{user}?",
        "admin.ask.grant_days": "{plan} for #{user}: for how many days?",
        "admin.confirm.revoke": "Take {plan} away from #{user} now?",
        "admin.confirm.refund": "Refund {amount} ({provider}, {at}, payment {payment}) to #{user}? The plan follows the refund rules.",
        "admin.broadcast.ask": "📣 Send the text to broadcast (Markdown). Attach a photo with the text as its caption if you like. /cancel to stop.",
        "admin.broadcast.sample": "👆 This is how people will see it.",
        "admin.broadcast.everyone": "👥 Everyone",
        "admin.broadcast.active": "🕒 Active {days} d",
        "admin.broadcast.send": "📣 Send",
        "admin.broadcast.edit": "✏️ Change the text",
        "admin.broadcast.discard": "🗑 Discard",
        "admin.broadcast.discarded": "🗑 The draft is discarded.",
        "admin.broadcast.pause": "⏸ Pause",
        "admin.broadcast.resume": "▶ Resume",
        "admin.broadcast.cancel": "⏹ Cancel",
        "admin.broadcast.empty": "A broadcast needs text or a photo.",
        "admin.cancelled": "OK, nothing was changed.",
        "admin.stats.header": "📈 Stats · {at}",
        "admin.stats.people": "👥 People: {total} · active 24 h {d1} · 7 d {d7} · 30 d {d30}",
        "admin.stats.answers": "💬 Answers in {days} days: {answers} · {tokens} tokens",
        "admin.stats.day": "{day} {bar} {answers} · {tokens} tok",
        "admin.stats.models": "🤖 Top models:",
        "admin.stats.failures": "⚠️ Failures in {days} days: {failures}",
        "admin.stats.plans": "💳 Plans: {plans}",
        "admin.stats.ending": " ({count} ending)",
        "admin.stats.revenue": "💰 Revenue (net, payments) this month / last month:",
        "admin.stats.revenue_line": "• {provider}: {this} / {last}",
        "admin.audit.header": "📜 Audit log, newest first · page {page}/{pages} · {total} in all",
        "admin.audit.empty": "📜 The audit log is empty.",
        "admin.models.header": "🤖 Models: {total}, turned off: {off}",
        "admin.person.header": "👤 #{id} {name}{admin}",
        "admin.person.is_admin": " · admin",
        "admin.person.account": "• {platform} {id}{username} · seen {seen}{blocked}",
        "admin.person.blocked": " · blocked the bot",
        "admin.person.banned": "🚫 Banned: {reason}",
        "admin.person.plan": "💳 {plan} ({status}) until {until} · via {provider}{renews}",
        "admin.person.renews": " · renews",
        "admin.person.activity": "🕒 Joined {joined} · last seen {seen} · {conversations} conversations",
        "admin.person.payments": "💰 Payments ({shown} of {total}):",
        "admin.person.no_payments": "💰 No payments.",
        "admin.person.payment": "• {at} {kind} {amount} · {provider} · {status} · {tier}",
        "admin.done.grant": "✅ #{user}: {old} → {new} until {until} ({days} days).",
        "admin.done.revoke": "✅ #{user}: {old} taken away; the plan is Free now.",
        "admin.done.revoke_renews": "⚠️ It renews at {provider}: cancel it there too, or the next renewal brings it back.",
        "admin.done.all_quotas": "all quotas",
        "admin.done.reset": "✅ #{user}: {quotas} reset to 0.",
        "admin.done.ban": "🚫 #{user} is banned. Reason: {reason}",
        "admin.done.stopped": "⏹ Answers streaming for them, told to stop: {count}.",
        "admin.done.unban": "✅ #{user} is not banned any more.",
        "admin.done.not_banned": "#{user} is not banned.",
        "admin.done.model_disable": "⛔ {model} ({id}) is turned off for everyone.",
        "admin.done.model_enable": "✅ {model} ({id}) is on for everyone.",
        "admin.done.refresh": "🔄 Catalog refreshed: {models} models, {changed} with new prices or limits.",
        "admin.done.refresh_failed": "⚠️ The provider's model list could not be fetched; the catalog stays as it was ({models} models).",
        "admin.find.label": "Id, telegram:ID, discord:ID or @username",
        "admin.ban.label": "Reason (optional, for the audit log)",
        "admin.broadcast.label": "Text (Markdown)",
        "admin.broadcast.in_dm": "📬 The sample and the preview are in our DMs: pick the audience and press Send there.",
        "admin.broadcast.no_dm": "⚠️ I cannot send you a DM. Allow direct messages from this server's members, or use /admin in a DM with me.",
        "error.admin_error": "That admin request cannot be done.",
        "error.admin_person_not_found": "Nobody matches “{query}”. Try our id, telegram:ID, discord:ID or @username.",
        "error.admin_person_ambiguous": "“{query}” matches several people: {users}. Use one of these ids.",
        "error.admin_bad_tier": "No plan “{tier}” to give: use pro or enterprise (revoke takes a plan away).",
        "error.admin_bad_days": "Days must be between 1 and {most}.",
        "error.admin_nothing_to_revoke": "#{user} has no plan to take away.",
        "error.admin_target_is_admin": "#{user} is an administrator and cannot be banned.",
        "error.admin_bad_quota": "No quota “{key}”: use one of {keys}.",
        "error.admin_default_model": "{model} is the default model (DEFAULT_MODEL) and stays on. Set another default first.",
        "slow_down": "You're sending messages too fast. Please wait a moment.",
        "error.refund_not_found": "There is no payment {payment} in the ledger.",
        "error.refund_already": "This payment ({payment}) was refunded already.",
        "error.refund_in_progress": "A refund of this payment ({payment}) is already under way.",
        "error.refund_refused": "{provider} refused the refund: {reason}",
        "error.refund_unknown": "{provider} did not confirm the refund in time; it may have gone through. It is recorded when {provider} reports it; press again in a few minutes to check.",
        "error.refund_not_configured": "{provider} is not set up on this bot, so its payments cannot be refunded here.",
        "error.refund_unsupported": "Payments through {provider} cannot be refunded from the bot: refund it with {provider} itself.",
        "error.refund_nothing": "Ledger row {payment} is not a payment that took money: there is nothing to refund.",
        "refund.done": "↩️ Refunded {price} ({provider}, payment {payment}). Plan: {before} → {after}.",
        "refund.done_plan_kept": "↩️ Refunded {price} ({provider}, payment {payment}). The plan stays {after}.",
        "refund.pending": "↩️ {provider} accepted the refund of {price} (payment {payment}) and is processing it; the plan changes when it is done.",
        "refund.renewals_stopped": "Its renewals at {provider} are stopped.",
        "refund.renewals_left": "⚠️ It still renews at {provider}: cancel the subscription there, or the next renewal charges them and brings the plan back.",
        "error.generic": "Something went wrong. Please try again.",
        "error.resend": "⚠️ Something went wrong and your message was not answered. Please send it again.",
        "photo_unavailable": "I could not download that photo. Please send it again.",
        # -- web search --
        "cmd.search": "Ask with a web search",
        "quota.web_search": "Web searches",
        "search.usage": "Usage: /search what is new in Python 3.13",
        "search.unavailable": "Web search is not available on this server.",
        "settings.web_search_on": "🔎 Web search: on",
        "settings.web_search_off": "🔎 Web search: off",
        "search.enabled": "🔎 Every answer in this conversation now searches the web.",
        "search.disabled": "Web search is off for this conversation.",
        "search.no_conversation": "Send a message first: web search is switched per conversation.",
        "search.sources": "Sources:",
        # -- private deployments (ACCESS_MODE) --
        "access.private": "🔒 This bot is private. Ask its owner for an invite.",
        "access.welcome": "✅ Your invite worked: you can use the bot now.",
        "access.already": "You have access already; the invite was not used.",
        "access.start_discord": "👋 Hi! Send me a direct message or use /chat to talk to the model. /help lists every command.",
        "error.access_error": "That did not work.",
        "error.access_invite_unknown": "This invite code is not valid. Check it, or ask the bot's owner for a new one.",
        "error.access_invite_used_up": "This invite has been used up. Ask the bot's owner for a new one.",
        "error.access_invite_expired": "This invite has expired. Ask the bot's owner for a new one.",
        "error.access_bad_entry": "“{entry}” is not an allowlist entry: use telegram:ID, discord:ID, a Discord mention or @username.",
        "error.admin_invites_off": "Invites work only with ACCESS_MODE=invite (now: {mode}).",
        "error.admin_bad_uses": "Uses must be between 1 and {most}.",
        "admin.access.header": "🔒 Access: {mode}. Allowlist ({count}):",
        "admin.access.empty": "🔒 Access: {mode}. The allowlist is empty.",
        "admin.access.line": "• {entry}{config}",
        "admin.access.from_config": " (ACCESS_ALLOWLIST)",
        "admin.access.usage": "/admin allow ENTRY · /admin deny ENTRY · /admin invite [uses] [days]",
        "admin.done.allow": "✅ {entry} is on the allowlist.",
        "admin.done.allow_already": "{entry} was on the allowlist already.",
        "admin.done.deny": "✅ {entry} is off the allowlist.",
        "admin.done.deny_missing": "{entry} was not on the allowlist.",
        "admin.done.deny_config": "It is also in ACCESS_ALLOWLIST: remove it there too, or it comes back at the next start.",
        "admin.done.open_mode": "ACCESS_MODE is open: everyone has access until it is allowlist or invite.",
        "admin.invite.telegram": "🎟 An invite for {uses} (valid until {until}):\n{link}",
        "admin.invite.discord": "🎟 An invite for {uses} (valid until {until}): on Discord, `/start {code}`",
        "admin.invite.uses": "{uses} use(s)",
        "cmd.mode": "Chat mode: translator, coder, …",
        "mode.header": "Current mode: {mode}\nPick a mode for this conversation:",
        "mode.mine": "✍️ My prompt",
        "mode.set": "✅ Mode: {mode}",
        "mode.mine_set": "✅ Mode: {mode} (your prompt from /settings)",
        "mode.model_set": "🤖 Model: {model}",
        "mode.model_locked": "🔒 This mode prefers {model}, which needs the {plan} plan.",
        "mode.model_off": "This mode prefers {model}, which is turned off for now.",
        "mode.model_kept": "Staying on {model}.",
        "error.unknown_mode": "I don't know that mode.",
        "voice.edit": "✏️ Edit",
        "voice.edit_ask": "Send the corrected text of this voice note.",
        "voice.edit_empty": "The corrected text is empty: nothing was changed.",
        "voice.edit_title": "Correct the transcript",
        "voice.edit_label": "What you said",
        "voice.to_model": "🎧 Sent to {model} as audio.",
        "voice.label": "🎤 voice note ({seconds} s)",
        "quota.voice_seconds": "Voice minutes",
        "usage.voice_line": "{label}: {bar} {used}/{limit} min · {remaining} min left · resets {when}",
        "document.question": "Summarize this document.",
        "document.label": "📎 {name}",
        "document.label_pages": "📎 {name} ({pages} pages)",
        "document.label_page": "📎 {name} (1 page)",
        "document.too_large_pages": "📎 {name} is too long for {model}: about {fit} of {pages} pages ({percent}%) fit in its window.",
        "document.too_large": "📎 {name} is too long for {model}: about {percent}% of it fits in its window.",
        "document.offer_first": "✂️ I can answer from the first part only.",
        "document.offer_bigger": "🔁 {model} takes it whole.",
        "document.no_bigger": "No model on your plan takes it whole: /plan shows bigger plans.",
        "document.first_button": "✂️ Use the first part",
        "document.bigger_button": "🔁 Switch to {model}",
        "document.first_part_pages": "✂️ Only the first part of {name} goes to the model: about {fit} of {pages} pages ({percent}%).",
        "document.first_part": "✂️ Only the first part of {name} goes to the model: about {percent}% of it.",
        "document.one": "Please send one document at a time, with your question as its text.",
    },
    "ru": {
        "start": (
            "👋 Привет, {name}! Я OneAI: здесь можно говорить с {models} моделями ИИ.\n\n"
            "Ваш тариф: {plan}.\n\n"
            "Просто напишите сообщение. Отредактируйте сообщение, чтобы получить новый "
            "ответ, нажмите 🔄, чтобы сгенерировать заново, ◀ ▶ — чтобы листать версии, "
            "ответьте на старый ответ, чтобы продолжить с него.\n\n/help — все команды."
        ),
        "help": (
            "Команды:\n"
            "/new — новый разговор\n"
            "/model — выбрать модель\n"
            "/mode — режим чата: переводчик, программист, редактор, …\n"
            "/history — ваши разговоры\n"
            "/rename НАЗВАНИЕ — переименовать разговор\n"
            "/export — разговор файлом Markdown\n"
            "/usage — ваши лимиты\n"
            "/settings — системный промпт, модель, язык\n"
            "/search ВОПРОС — спросить с поиском в интернете (где он есть)\n"
            "/image ОПИСАНИЕ — создать изображение\n"
            "/plan — тарифы\n"
            "/link — один аккаунт в Telegram и Discord\n"
            "/cancel — остановить то, что выполняется\n\n"
            "Отредактируйте отправленное сообщение, чтобы получить новый ответ; "
            "ответьте на старый ответ, чтобы продолжить с него. Голосовые сообщения "
            "распознаются, а документы (PDF, DOCX, текст) читаются: подпись — это вопрос."
        ),
        "cmd.start": "Приветствие и тариф",
        "cmd.help": "Как пользоваться ботом",
        "cmd.new": "Новый разговор",
        "cmd.model": "Выбрать модель",
        "cmd.history": "Ваши разговоры",
        "cmd.rename": "Переименовать разговор",
        "cmd.export": "Экспорт разговора",
        "cmd.usage": "Ваши лимиты",
        "cmd.settings": "Промпт, модель, язык",
        "cmd.image": "Создать изображение",
        "cmd.plan": "Тарифы",
        "cmd.cancel": "Остановить",
        "new": "🆕 Новый разговор. Напишите первое сообщение.",
        "busy": "⏳ Ещё отвечаю — сначала нажмите «Стоп».",
        "queued": "⏳ В очереди: отвечу сразу после текущего ответа.",
        "stopped": "⏹ Остановлено.",
        "cut": "⚠️ Ответ прервался из-за перезапуска. Нажмите 🔄, чтобы повторить.",
        "failed": "⚠️ {reason}",
        "empty_answer": "Модель вернула пустой ответ.",
        "stop": "⏹ Стоп",
        "regenerate": "🔄 Заново",
        "not_yours": "Эта кнопка не для вас.",
        "stale_button": "Эта кнопка больше не работает.",
        "unknown_command": "Я не знаю такой команды. /help — что я умею.",
        "unsupported": "Я понимаю только текст, фото, документы и голосовые сообщения. Пожалуйста, пришлите вопрос в одном из этих видов.",
        "no_vision": (
            "{model} не умеет смотреть на изображения. Выберите подходящую модель в /model "
            "или опишите картинку словами."
        ),
        "model.header": "Текущая модель: {model}\nВыберите (🔒 — нужен тариф выше):",
        "model.set": "✅ Модель: {model}",
        "model.locked": "🔒 {model} доступна на тарифе {plan}. /plan — как перейти.",
        "quota.small_messages": "Обычные сообщения",
        "quota.large_messages": "Большие сообщения",
        "quota.image_generation": "Изображения",
        "usage.header": "📊 Тариф: {plan}",
        "usage.line": "{label}: {bar} {used}/{limit} · осталось {remaining} · сброс {when}",
        "usage.rolling": "через 3 ч после следующего использования",
        "history.empty": "Разговоров пока нет. Просто напишите сообщение.",
        "history.header": "🗂 Ваши разговоры (стр. {page}/{pages}):",
        "history.resume": "▶ Продолжить",
        "history.delete": "🗑 Удалить",
        "history.resumed": "▶ Продолжаем «{title}».",
        "history.export": "📄 Экспорт…",
        "help.discord": (
            "В личных сообщениях просто пишите; на сервере /chat ЗАПРОС открывает ветку, и "
            "каждое сообщение в ней продолжает разговор (в других местах упомяните бота).\n"
            "/chat ЗАПРОС — спросить модель\n"
            "/new — новый разговор\n"
            "/model — выбрать модель\n"
            "/mode — режим чата: переводчик, программист, редактор, …\n"
            "/history — ваши разговоры\n"
            "/rename НАЗВАНИЕ — переименовать разговор\n"
            "/export — разговор файлом Markdown\n"
            "/usage — ваши лимиты\n"
            "/settings — системный промпт, модель по умолчанию, язык\n"
            "/search ВОПРОС — спросить с поиском в интернете (где он есть)\n"
            "/image ЗАПРОС — нарисовать картинку\n"
            "/plan — тарифы\n"
            "/link — один аккаунт в Telegram и Discord\n"
            "/cancel — остановить ответ\n\n"
            "Отредактируйте сообщение, чтобы получить новый ответ; под ответом 🔄 пишет "
            "другую версию, а ◀ n/m ▶ листает их. Голосовые сообщения распознаются, "
            "а приложенные документы (PDF, DOCX, текст) читаются."
        ),
        "history.deleted": "🗑 Удалён «{title}».",
        "rename.usage": "Использование: /rename Новое название",
        "rename.done": "✏️ Переименовано в «{title}».",
        "nothing": "Разговора пока нет.",
        "settings.header": (
            "⚙️ Настройки\n\nСистемный промпт: {prompt}\nМодель по умолчанию: {model}\n"
            "Язык: {language}"
        ),
        "settings.prompt": "✍️ Системный промпт",
        "settings.prompt_clear": "🧹 Очистить промпт",
        "settings.model": "🤖 Модель по умолчанию",
        "settings.language": "🌐 Язык",
        "settings.ask_prompt": "Пришлите системный промпт для новых сообщений (или /cancel).",
        "settings.prompt_saved": "✅ Системный промпт сохранён.",
        "settings.prompt_cleared": "✅ Системный промпт очищен.",
        "settings.language_set": "✅ Язык: русский",
        "settings.none": "нет",
        "cancel.done": "Отменено.",
        "cancel.nothing": "Нечего отменять.",
        "cmd.link": "Один аккаунт в Telegram и Discord",
        "link.code": (
            "🔗 Ваш код для связи: {code}\n\n"
            "На другой платформе отправьте боту /link {code}, чтобы объединить оба "
            "аккаунта в один: один тариф, одни лимиты, все разговоры. Код действует "
            "один раз, {minutes} минут."
        ),
        "link.header": "🔗 Связанные аккаунты:",
        "link.identity": "• {platform}{name}",
        "link.here": " (здесь)",
        "link.unlink": "Отвязать {platform}",
        "link.confirm_unlink": (
            "Отвязать {platform}? У этого аккаунта останутся тариф, лимиты и разговоры; "
            "{platform} начнёт заново как отдельный бесплатный аккаунт."
        ),
        "link.yes_unlink": "Да, отвязать {platform}",
        "link.keep": "Оставить связь",
        "link.unlinked": "✅ {platform} отвязан, теперь у него свой бесплатный аккаунт.",
        "link.done": (
            "✅ Связано: {platforms} теперь один аккаунт. Тариф: {plan}. "
            "Разговоров: {conversations}."
        ),
        "link.ended_recurring": (
            "Подписка {plan} другого аккаунта всё ещё продлевается у платёжной системы: "
            "отмените её там, если она больше не нужна."
        ),
        "notice.account.linked": (
            "🔗 Ваши аккаунты связаны: один тариф ({plan}), одни лимиты, все разговоры. "
            "/link — подробности."
        ),
        "notice.account.unlinked": (
            "🔓 Этот аккаунт отвязан от остальных и начинает заново на тарифе {plan}."
        ),
        "error.link_code_malformed": (
            "Код для связи выглядит так: ABCD-EFGH — 8 букв и цифр. Отправьте /link на "
            "другой платформе, чтобы получить его."
        ),
        "error.link_code_invalid": (
            "Код неверный, уже использован или истёк. Осталось попыток: {tries_left}, "
            "затем связь аккаунтов заблокируется на час."
        ),
        "error.link_locked": "Слишком много неверных кодов. Связать аккаунты можно после {until}.",
        "error.link_own_code": (
            "Это код, показанный здесь. Введите его на другой платформе: /link КОД там."
        ),
        "error.link_same_platform": (
            "В обоих аккаунтах уже есть {platform}, а в одном аккаунте может быть только "
            "один {platform}. Сначала отвяжите один из них (/link подскажет как)."
        ),
        "error.link_already_linked": "Эти аккаунты уже связаны.",
        "error.link_conflict": "Ваши аккаунты изменились за это время. Попробуйте ещё раз.",
        "error.link_not_linked": "{platform} не связан с этим аккаунтом.",
        "error.link_last_identity": "Это ваш единственный аккаунт: отвязывать нечего.",
        "error.link_busy": (
            "⏳ Ответ ещё пишется. Дождитесь его или нажмите «Стоп», затем свяжите аккаунты."
        ),
        "image.usage": "Использование: /image акварельная лиса в снегу",
        "image.failed": "⚠️ Не удалось создать изображение: {reason}",
        "image.no_image": "Модель не вернула изображение. Попробуйте другое описание.",
        "plan.soon": "Оплата тарифа в чате пока недоступна в этом боте.",
        "plan.header": "💳 Ваш тариф: {plan}",
        "plan.tier": (
            "{mark}{plan}: {small} обычных и {large} больших сообщений в месяц, "
            "{images} изображений каждые 3 часа"
        ),
        "cmd.cancel_subscription": "Отменить подписку",
        "cmd.paysupport": "Вопросы об оплате",
        "plan.status": "Статус: {status} · до {until}",
        "plan.status.active": "активен",
        "plan.status.cancelled": "отменён, доступ сохраняется до конца периода",
        "plan.status.past_due": "продление не оплачено",
        "plan.status.unpaid": "не оплачен",
        "plan.renews": " · продлевается автоматически",
        "plan.buy": "Перейти или продлить:",
        "plan.nothing_to_buy": "В этом боте тарифы пока не продаются.",
        "plan.enterprise": "Enterprise — по индивидуальной цене: {contact}.",
        "buy.stars": "⭐ {plan} · {price} / 30 дней",
        "buy.stars_monthly": "⭐ {plan} · {price} в месяц, с продлением",
        "buy.provider": "💳 {plan} · {price} / 30 дней",
        "buy.yookassa": "💳 {plan} · {price} / 30 дней (карта, ЮKassa)",
        "buy.razorpay": "💳 {plan} · {price} в месяц (Razorpay)",
        "buy.discord_sku": "💎 {plan} · подписка Discord",
        "buy.link": "{plan}: {price}. Оплатите на странице платёжной системы; тариф включится, как только придёт оплата.",
        "buy.monthly_link": "{plan}: {price} в месяц в Telegram Stars, продлевается каждые 30 дней, пока вы не отмените (/cancel_subscription).",
        "buy.open": "Оплатить {price}",
        "buy.failed": "Не удалось начать оплату. Попробуйте через минуту.",
        "buy.unavailable": "Этот способ оплаты больше недоступен. Откройте /plan снова.",
        "invoice.title": "OneAI {plan}",
        "invoice.description": "{plan} на 30 дней: {small} обычных и {large} больших сообщений в месяц, {images} изображений каждые 3 часа.",
        "invoice.label": "{plan}, 30 дней",
        "pay.error.unknown_order": "Этот счёт больше не действителен. Откройте /plan, чтобы получить новый.",
        "pay.error.not_for_sale": "Этот тариф больше не продаётся. Откройте /plan.",
        "pay.error.price_changed": "Цена изменилась. Откройте /plan, чтобы получить новый счёт.",
        "pay.error.banned": "Оплата недоступна для этого аккаунта.",
        "pay.error.busy": "Не удалось вовремя проверить платёж. Попробуйте ещё раз.",
        "pay.unknown": "Мы получили ваш платёж, но не смогли сопоставить его с заказом. Напишите в /paysupport — ничего не потеряно.",
        "cancel_sub.none": "У вас нет подписки, которую можно отменить.",
        "cancel_sub.already": "Подписка уже отменена; {plan} действует до {until}.",
        "cancel_sub.failed": "Платёжная система не подтвердила отмену. Попробуйте позже.",
        "cancel_sub.in_telegram": "Подписка продлевается через Telegram Stars. Отмените её в Telegram: /cancel_subscription в чате с ботом.",
        "cancel_sub.in_discord": "Подписку оплачивает Discord. Отмените её в Discord: Настройки пользователя → Подписки.",
        "paysupport": "Вопросы об оплате или возврате? Напишите {contact}, указав дату и сумму платежа. Ваш тариф и дата окончания: /plan.",
        "notice.plan.activated": "✅ {plan} действует до {until}. Лимиты начались заново: /usage",
        "notice.plan.renewed": "🔄 {plan} продлён до {until}.",
        "notice.plan.downgraded": "Ваш тариф теперь {plan}, до {until}. Новые лимиты: /usage.",
        "notice.plan.cancelled": "Подписка {plan} отменена. Она действует до {until}.",
        "notice.plan.expired": "Тариф {old_plan} закончился; теперь у вас {plan}. /plan — вернуть.",
        "notice.plan.refunded": "Платёж за {old_plan} возвращён; теперь у вас {plan}.",
        "notice.plan.refunded_back": "Платёж за {old_plan} возвращён; у вас снова {plan} до {until}.",
        "notice.plan.payment_refunded": "Ваш платёж {price} возвращён.",
        "notice.plan.reminder": "⏰ {plan} заканчивается {until}. /plan — продлить.",
        "notice.plan.reminder_renews": "⏰ {plan} продлится {until}.",
        "notice.plan.past_due": "⚠️ Оплата продления {plan} не прошла; будет повторная попытка. {plan} действует до {until}.",
        "notice.plan.unpaid": "⚠️ {plan} не удалось продлить: платежи не прошли. Тариф закончится {until}.",
        "notice.plan.payment_unused": "Мы получили {price} за {plan}, но ваш текущий тариф уже больше, поэтому ничего не изменилось. Напишите в /paysupport — мы вернём деньги.",
        "pay.error.lower_plan": "Ваш текущий тариф уже включает этот.",
        "pay.error.already_renewing": "У вас уже есть подписка с продлением. Сначала отмените её: /cancel_subscription.",
        "blocked": "Ваш доступ к сервису приостановлен.",
        # -- администрирование (core/admin) --
        "cmd.admin": "Администрирование",
        "none": "нет",
        "admin.menu": "🛠 Администрирование",
        "admin.button.stats": "📊 Статистика",
        "admin.button.person": "👤 Найти человека",
        "admin.button.models": "🤖 Модели",
        "admin.button.refresh": "🔄 Обновить каталог",
        "admin.button.audit": "📜 Журнал действий",
        "admin.button.grant": "🎁 Выдать тариф",
        "admin.button.revoke": "↩️ Забрать тариф",
        "admin.button.reset": "♻️ Сбросить лимиты",
        "admin.button.ban": "🚫 Заблокировать",
        "admin.button.unban": "✅ Разблокировать",
        "admin.button.disable": "⛔ Выключить",
        "admin.button.enable": "✅ Включить",
        "admin.button.newer": "◀ Новее",
        "admin.button.older": "Старше ▶",
        "admin.ask.person": "Пришлите наш id, telegram:ID, discord:ID или @username (или /cancel).",
        "admin.ask.days": "На сколько дней (от 1 до {most})?",
        "admin.ask.reason": "Причина? Она попадёт в журнал (или пришлите -, если без причины).",
        "admin.button.broadcast": "📣 Рассылка",
        "admin.button.back": "« Меню",
        "admin.button.card": "« К карточке",
        "admin.button.yes": "✅ Да, выполнить",
        "admin.button.no": "✖ Нет",
        "admin.button.days": "{days} дн.",
        "admin.button.refund": "💸 Вернуть {amount} ({at})",
        "admin.ask.plan": "Какой тариф выдать #{user}?",
        "admin.ask.grant_days": "{plan} для #{user}: на сколько дней?",
        "admin.confirm.revoke": "Забрать {plan} у #{user} сейчас?",
        "admin.confirm.refund": "Вернуть {amount} ({provider}, {at}, платёж {payment}) пользователю #{user}? Тариф изменится по правилам возврата.",
        "admin.broadcast.ask": "📣 Пришлите текст рассылки (Markdown). Можно приложить фото с текстом в подписи. /cancel — отмена.",
        "admin.broadcast.sample": "👆 Так это увидят люди.",
        "admin.broadcast.everyone": "👥 Все",
        "admin.broadcast.active": "🕒 Активные {days} дн.",
        "admin.broadcast.send": "📣 Отправить",
        "admin.broadcast.edit": "✏️ Изменить текст",
        "admin.broadcast.discard": "🗑 Удалить",
        "admin.broadcast.discarded": "🗑 Черновик удалён.",
        "admin.broadcast.pause": "⏸ Пауза",
        "admin.broadcast.resume": "▶ Продолжить",
        "admin.broadcast.cancel": "⏹ Отменить",
        "admin.broadcast.empty": "В рассылке нужен текст или фото.",
        "admin.cancelled": "Хорошо, ничего не изменено.",
        "admin.stats.header": "📈 Статистика · {at}",
        "admin.stats.people": "👥 Людей: {total} · активны за 24 ч {d1} · 7 д {d7} · 30 д {d30}",
        "admin.stats.answers": "💬 Ответов за {days} дн.: {answers} · {tokens} токенов",
        "admin.stats.day": "{day} {bar} {answers} · {tokens} ток.",
        "admin.stats.models": "🤖 Популярные модели:",
        "admin.stats.failures": "⚠️ Сбои за {days} дн.: {failures}",
        "admin.stats.plans": "💳 Тарифы: {plans}",
        "admin.stats.ending": " ({count} заканчиваются)",
        "admin.stats.revenue": "💰 Выручка (за вычетом возвратов, платежей) в этом / прошлом месяце:",
        "admin.stats.revenue_line": "• {provider}: {this} / {last}",
        "admin.audit.header": "📜 Журнал действий, сначала новые · стр. {page}/{pages} · всего {total}",
        "admin.audit.empty": "📜 Журнал действий пуст.",
        "admin.models.header": "🤖 Моделей: {total}, выключено: {off}",
        "admin.person.header": "👤 #{id} {name}{admin}",
        "admin.person.is_admin": " · администратор",
        "admin.person.account": "• {platform} {id}{username} · был(а) {seen}{blocked}",
        "admin.person.blocked": " · заблокировал(а) бота",
        "admin.person.banned": "🚫 Заблокирован(а): {reason}",
        "admin.person.plan": "💳 {plan} ({status}) до {until} · через {provider}{renews}",
        "admin.person.renews": " · продлевается",
        "admin.person.activity": "🕒 С нами с {joined} · был(а) {seen} · разговоров: {conversations}",
        "admin.person.payments": "💰 Платежи ({shown} из {total}):",
        "admin.person.no_payments": "💰 Платежей нет.",
        "admin.person.payment": "• {at} {kind} {amount} · {provider} · {status} · {tier}",
        "admin.done.grant": "✅ #{user}: {old} → {new} до {until} ({days} дн.).",
        "admin.done.revoke": "✅ #{user}: тариф {old} забран, теперь Free.",
        "admin.done.revoke_renews": "⚠️ Подписка продлевается у {provider}: отмените её и там, иначе продление вернёт тариф.",
        "admin.done.all_quotas": "все лимиты",
        "admin.done.reset": "✅ #{user}: {quotas} — сброшено до 0.",
        "admin.done.ban": "🚫 #{user} заблокирован(а). Причина: {reason}",
        "admin.done.stopped": "⏹ Остановлено идущих ответов: {count}.",
        "admin.done.unban": "✅ #{user} разблокирован(а).",
        "admin.done.not_banned": "#{user} не заблокирован(а).",
        "admin.done.model_disable": "⛔ {model} ({id}) выключена для всех.",
        "admin.done.model_enable": "✅ {model} ({id}) включена для всех.",
        "admin.done.refresh": "🔄 Каталог обновлён: моделей {models}, с новыми ценами или лимитами: {changed}.",
        "admin.done.refresh_failed": "⚠️ Не удалось получить список моделей у провайдера; каталог остался прежним (моделей: {models}).",
        "admin.find.label": "id, telegram:ID, discord:ID или @username",
        "admin.ban.label": "Причина (необязательно, для журнала)",
        "admin.broadcast.label": "Текст (Markdown)",
        "admin.broadcast.in_dm": "📬 Пример и предпросмотр — в наших личных сообщениях: выберите получателей и нажмите «Отправить» там.",
        "admin.broadcast.no_dm": "⚠️ Не могу написать вам в личные сообщения. Разрешите их для участников этого сервера или используйте /admin в личном чате со мной.",
        "error.admin_error": "Это действие выполнить нельзя.",
        "error.admin_person_not_found": "Никто не найден по «{query}». Попробуйте наш id, telegram:ID, discord:ID или @username.",
        "error.admin_person_ambiguous": "«{query}» подходит нескольким людям: {users}. Укажите один из этих id.",
        "error.admin_bad_tier": "Нельзя выдать тариф «{tier}»: выберите pro или enterprise (забрать тариф — revoke).",
        "error.admin_bad_days": "Число дней — от 1 до {most}.",
        "error.admin_nothing_to_revoke": "У #{user} нет тарифа, который можно забрать.",
        "error.admin_target_is_admin": "#{user} — администратор, его нельзя заблокировать.",
        "error.admin_bad_quota": "Нет лимита «{key}»: используйте один из {keys}.",
        "error.admin_default_model": "{model} — модель по умолчанию (DEFAULT_MODEL), она остаётся включённой. Сначала выберите другую.",
        "error.model_disabled": "Эта модель сейчас выключена. Выберите другую в /model.",
        "slow_down": "Вы отправляете сообщения слишком часто. Подождите немного.",
        "error.refund_not_found": "Платежа {payment} нет в журнале.",
        "error.refund_already": "Этот платёж ({payment}) уже возвращён.",
        "error.refund_in_progress": "Возврат этого платежа ({payment}) уже выполняется.",
        "error.refund_refused": "{provider} отказал в возврате: {reason}",
        "error.refund_unknown": "{provider} не подтвердил возврат вовремя; возможно, он прошёл. Он будет записан, когда {provider} сообщит о нём; нажмите ещё раз через несколько минут, чтобы проверить.",
        "error.refund_not_configured": "{provider} не настроен в этом боте, поэтому его платежи здесь не вернуть.",
        "error.refund_unsupported": "Платежи через {provider} нельзя вернуть из бота: верните его в самом {provider}.",
        "error.refund_nothing": "Запись {payment} — не платёж с деньгами: возвращать нечего.",
        "refund.done": "↩️ Возвращено {price} ({provider}, платёж {payment}). Тариф: {before} → {after}.",
        "refund.done_plan_kept": "↩️ Возвращено {price} ({provider}, платёж {payment}). Тариф остаётся {after}.",
        "refund.pending": "↩️ {provider} принял возврат {price} (платёж {payment}) и обрабатывает его; тариф изменится, когда он завершится.",
        "refund.renewals_stopped": "Продления в {provider} остановлены.",
        "refund.renewals_left": "⚠️ Подписка в {provider} всё ещё продлевается: отмените её там, иначе следующее продление снова спишет деньги и вернёт тариф.",
        "error.generic": "Что-то пошло не так. Попробуйте ещё раз.",
        "error.resend": "⚠️ Что-то пошло не так, и на сообщение не ответили. Пожалуйста, отправьте его ещё раз.",
        "error.not_saved": "Ответ не удалось сохранить, и он не засчитан. Нажмите 🔄, чтобы повторить.",
        "error.shutting_down": "Бот перезапускается. Пожалуйста, отправьте сообщение ещё раз через минуту.",
        "photo_unavailable": "Не удалось загрузить фото. Пожалуйста, отправьте его ещё раз.",
        "voice.edit": "✏️ Исправить",
        "voice.edit_ask": "Пришлите исправленный текст этого голосового сообщения.",
        "voice.edit_empty": "Исправленный текст пуст: ничего не изменилось.",
        "voice.edit_title": "Исправить расшифровку",
        "voice.edit_label": "Что вы сказали",
        "voice.to_model": "🎧 Отправлено модели {model} как аудио.",
        "voice.label": "🎤 голосовое сообщение ({seconds} с)",
        "quota.voice_seconds": "Голосовые минуты",
        "usage.voice_line": "{label}: {bar} {used}/{limit} мин · осталось {remaining} мин · сброс {when}",
        "error.voice_disabled": "Голосовые сообщения здесь не включены. Пожалуйста, напишите текстом.",
        "error.voice_not_audio": "Как аудио модели можно отправить только звукозапись. Пришлите голосовое сообщение или аудиофайл, или напишите текстом.",
        "error.voice_model_deaf": "{model} не умеет слушать голосовые сообщения. Выберите модель с 🎧 в /model, чтобы отправлять их, или напишите текстом.",
        "error.voice_too_long": "Это голосовое сообщение длится {seconds} с; ваш тариф принимает до {limit} с. Пришлите покороче или напишите текстом.",
        "error.voice_too_big": "Запись слишком большая для загрузки (предел {megabytes} МБ). Пришлите покороче.",
        "error.voice_day_limit": "На это голосовое ({seconds} с) не хватает оставшегося на сегодня ({left} с из {minutes} мин). Голосовые минуты обновятся {when}.",
        "error.voice_unavailable": "Не удалось загрузить запись. Пожалуйста, отправьте её ещё раз.",
        "error.voice_empty": "В этом голосовом сообщении не удалось расслышать слов. Попробуйте ещё раз.",
        "error.stt_error": "Не удалось расшифровать голосовое сообщение. Попробуйте ещё раз.",
        "error.stt_timeout": "Расшифровка голосового сообщения заняла слишком много времени. Попробуйте ещё раз.",
        "error.stt_rejected": "Сервис расшифровки отклонил это голосовое сообщение. Попробуйте ещё раз или напишите текстом.",
        "error.stt_unavailable": "Сервис расшифровки сейчас недоступен. Попробуйте чуть позже.",
        "error.quota_exceeded": "Лимит «{label}» исчерпан ({limit}). Сброс: {when}.{upgrade}",
        "quota.upgrade": " Тариф {plan} увеличивает лимит.",
        "error.busy": "⏳ Ещё отвечаю — сначала нажмите «Стоп».",
        "error.input_too_long": "Сообщение слишком длинное. Сократите его или разделите.",
        "error.message_too_long": "Сообщение слишком длинное для этой модели. Сократите его.",
        "error.conversation_full": "Разговор слишком длинный. Начните новый: /new.",
        "error.too_many_generations": "Уже идут ответы. Дождитесь их или нажмите «Стоп».",
        "error.rate_limited": "Модель сейчас перегружена. Попробуйте через минуту.",
        "error.timeout": "Модель не ответила вовремя. Попробуйте ещё раз.",
        "error.interrupted": "Ответ оборвался. Нажмите 🔄, чтобы повторить.",
        "error.model_unavailable": "Модель сейчас недоступна. Выберите другую в /model.",
        "error.out_of_credits": "У сервиса закончились кредиты. Мы уже разбираемся.",
        "error.banned": "Ваш доступ к сервису приостановлен.",
        "error.message_not_found": "Это сообщение больше не существует.",
        "error.conversation_not_found": "Этот разговор больше не существует.",
        "error.revision_not_found": "Такой версии нет.",
        "error.model_locked": "Эта модель доступна на тарифе выше. /plan — как перейти.",
        "error.unknown_model": "Такой модели нет. /model — список.",
        # -- web search --
        "cmd.search": "Спросить с поиском в интернете",
        "quota.web_search": "Поиск в интернете",
        "search.usage": "Использование: /search что нового в Python 3.13",
        "search.unavailable": "Поиск в интернете на этом сервере недоступен.",
        "settings.web_search_on": "🔎 Поиск в интернете: вкл",
        "settings.web_search_off": "🔎 Поиск в интернете: выкл",
        "search.enabled": "🔎 Теперь каждый ответ в этом разговоре ищет в интернете.",
        "search.disabled": "Поиск в интернете для этого разговора выключен.",
        "search.no_conversation": "Сначала напишите сообщение: поиск включается для разговора.",
        "search.sources": "Источники:",
        # -- private deployments (ACCESS_MODE) --
        "access.private": "🔒 Это закрытый бот. Попросите у его владельца приглашение.",
        "access.welcome": "✅ Приглашение сработало: теперь вы можете пользоваться ботом.",
        "access.already": "У вас уже есть доступ; приглашение не использовано.",
        "access.start_discord": "👋 Привет! Напишите мне в личные сообщения или используйте /chat. /help — все команды.",
        "error.access_error": "Не получилось.",
        "error.access_invite_unknown": "Этот код приглашения недействителен. Проверьте его или попросите у владельца бота новый.",
        "error.access_invite_used_up": "Это приглашение уже использовано. Попросите у владельца бота новое.",
        "error.access_invite_expired": "Срок этого приглашения истёк. Попросите у владельца бота новое.",
        "error.access_bad_entry": "«{entry}» — не запись списка: используйте telegram:ID, discord:ID, упоминание в Discord или @username.",
        "error.admin_invites_off": "Приглашения работают только при ACCESS_MODE=invite (сейчас: {mode}).",
        "error.admin_bad_uses": "Число использований — от 1 до {most}.",
        "admin.access.header": "🔒 Доступ: {mode}. Список ({count}):",
        "admin.access.empty": "🔒 Доступ: {mode}. Список пуст.",
        "admin.access.line": "• {entry}{config}",
        "admin.access.from_config": " (ACCESS_ALLOWLIST)",
        "admin.access.usage": "/admin allow ЗАПИСЬ · /admin deny ЗАПИСЬ · /admin invite [использований] [дней]",
        "admin.done.allow": "✅ {entry} в списке.",
        "admin.done.allow_already": "{entry} уже был в списке.",
        "admin.done.deny": "✅ {entry} убран из списка.",
        "admin.done.deny_missing": "{entry} не было в списке.",
        "admin.done.deny_config": "Запись есть и в ACCESS_ALLOWLIST: уберите её и оттуда, иначе она вернётся при следующем запуске.",
        "admin.done.open_mode": "ACCESS_MODE=open: доступ есть у всех, пока режим не allowlist или invite.",
        "admin.invite.telegram": "🎟 Приглашение на {uses} (действует до {until}):\n{link}",
        "admin.invite.discord": "🎟 Приглашение на {uses} (действует до {until}): в Discord — `/start {code}`",
        "admin.invite.uses": "{uses} использований",
        "cmd.mode": "Режим чата: переводчик, программист, …",
        "mode.header": "Текущий режим: {mode}\nВыберите режим для этого разговора:",
        "mode.mine": "✍️ Мой промпт",
        "mode.set": "✅ Режим: {mode}",
        "mode.mine_set": "✅ Режим: {mode} (ваш промпт из /settings)",
        "mode.model_set": "🤖 Модель: {model}",
        "mode.model_locked": "🔒 Этот режим предпочитает {model}, а она доступна на тарифе {plan}.",
        "mode.model_off": "Этот режим предпочитает {model}, но она сейчас отключена.",
        "mode.model_kept": "Остаётся {model}.",
        "error.unknown_mode": "Такого режима нет.",
        "document.question": "Кратко перескажи этот документ.",
        "document.label": "📎 {name}",
        "document.label_pages": "📎 {name} ({pages} стр.)",
        "document.label_page": "📎 {name} (1 стр.)",
        "document.too_large_pages": "📎 {name} слишком длинный для {model}: в окно модели помещается около {fit} из {pages} страниц ({percent}%).",
        "document.too_large": "📎 {name} слишком длинный для {model}: в окно модели помещается около {percent}%.",
        "document.offer_first": "✂️ Могу ответить только по первой части.",
        "document.offer_bigger": "🔁 {model} возьмёт его целиком.",
        "document.no_bigger": "Ни одна модель вашего тарифа не возьмёт его целиком: /plan — тарифы побольше.",
        "document.first_button": "✂️ Взять первую часть",
        "document.bigger_button": "🔁 Перейти на {model}",
        "document.first_part_pages": "✂️ Модель получит только первую часть {name}: около {fit} из {pages} страниц ({percent}%).",
        "document.first_part": "✂️ Модель получит только первую часть {name}: около {percent}%.",
        "document.one": "Пришлите один документ за раз, а вопрос — его подписью.",
        "error.document_too_big": "Файл весит {size_mb} МБ, а я читаю документы до {limit_mb} МБ. Пришлите файл поменьше или только нужную часть.",
        "error.document_unavailable": "Не удалось скачать файл. Пришлите его ещё раз.",
        "error.document_binary": "Это не текст, который я могу прочитать: я читаю PDF, DOCX и текстовые файлы (текст, Markdown, код, CSV в UTF-8).",
        "error.document_unreadable": "Документ повреждён или пуст: текста в нём нет.",
        "error.document_encrypted": "Документ защищён паролем, поэтому я не могу его прочитать. Снимите пароль (сохраните незащищённую копию) и пришлите снова.",
        "error.document_scanned": "В этом PDF ({pages} стр.) нет текстового слоя: похоже, это скан, и текста в нём нет. Пришлите PDF с выделяемым текстом (сначала распознайте его) или вставьте текст.",
        "error.document_too_many_pages": "В этом PDF {pages} страниц, а я читаю до {limit}. Пришлите нужную часть.",
        "error.document_too_long": "В документе больше {limit} символов текста — больше, чем я читаю. Пришлите нужную часть.",
        "error.document_timeout": "Документ читался слишком долго, и я остановился. Пришлите файл поменьше или только нужную часть.",
        "error.document_gone": "Этого документа больше нет. Пришлите его ещё раз.",
        "error.document_does_not_fit": "Документ больше не помещается в эту модель. Пришлите его ещё раз.",
        "error.not_yours": "Эта кнопка не для вас.",
    },
}

LANGUAGES = {"en": "English", "ru": "Русский"}


def pick_language(code: str | None) -> str:
    """The supported language closest to a platform's locale code."""
    if code:
        short = code.split("-")[0].split("_")[0].lower()
        if short in TEXTS:
            return short
    return DEFAULT_LANGUAGE


def t(lang: str | None, key: str, /, **values: object) -> str:
    table = TEXTS.get(lang or DEFAULT_LANGUAGE, TEXTS[DEFAULT_LANGUAGE])
    template = table.get(key) or TEXTS[DEFAULT_LANGUAGE].get(key) or key
    return template.format(**values) if values else template


def error_text(language: str | None, error: OneAIError) -> str:
    """An error in the user's language; English errors carry their own message."""
    lang = language or DEFAULT_LANGUAGE
    key = f"error.{error.code}"
    if lang != DEFAULT_LANGUAGE and key in TEXTS.get(lang, {}):
        values = dict(error.details)
        if error.code == "quota_exceeded":
            values.update(_quota_values(lang, values))
        try:
            return t(lang, key, **values)
        except (KeyError, IndexError):
            return TEXTS[lang][key]
    return error.user_message


def _quota_values(language: str, details: dict[str, object]) -> dict[str, object]:
    from datetime import datetime

    from core.tiers import TIERS, Tier

    resets_at = details.get("resets_at")
    upgrade = details.get("upgrade")
    return {
        "label": t(language, f"quota.{details.get('key')}"),
        "when": (
            resets_at.strftime("%Y-%m-%d %H:%M UTC") if isinstance(resets_at, datetime) else "—"
        ),
        "upgrade": (
            t(language, "quota.upgrade", plan=TIERS[upgrade].name)
            if isinstance(upgrade, Tier)
            else ""
        ),
    }
