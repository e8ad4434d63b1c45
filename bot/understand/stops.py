"""Stop and resume said in a sentence, and what only looks like one.

`consent(p)` → "stop", "resume", "maybe_stop" or None, read before every other
meaning (a stop must never be lost behind another intent):

- a clear stop: a request not to be sent messages any more (以后别给我发短信了,
  不要再发了, 取消订阅, 不想收到你们的消息, "please stop texting me", "opt me out");
- a clear resume: the request to get them again (恢复接收, 可以再给我发了,
  "start texting me again", "subscribe me again");
- a maybe-stop: a complaint about the messages or a question on how to stop
  (短信太多了, 怎么退订, "why do you keep texting me", "too many messages") — the
  bot asks once, naming the stop word;
- None for negations (不用退订, 别退订, "don't unsubscribe me") and lookalikes
  (T恤, 停车, 发票, "stop by", "bus stop", "non-stop").

The carriers' stop words alone ("T", "STOP", "退订") never get here: the keyword
router (`bot.router`) has matched them already.
"""

from __future__ import annotations

import re

from bot.understand.text import Prepared

_MSG_ZH = r"(?:短信|消息|信息|推送|广告|通知|促销|活动消息|营销|微信消息)"
_SEND_ZH = r"(?:发(?![票货型现错烧胖])|推送|推|打扰|骚扰|联系|通知)"

# Negated stop words: a "no" in front of the stop word itself.
_NOT_STOP_ZH = re.compile(
    r"(?:不用|不要|别|不想|不是|没|无需|不需要|先不|暂时不|暂不|不必|没有要|不会|没说|不打算)"
    r"(?:要|想|给我|帮我)?(?:退订|取消订阅|不接受)"
)
_STOP_ZH = re.compile(
    r"(?:别|不要|不用|甭|勿|不必|不许|不准|请勿|停止|不需要)再?(?:给我|跟我|向我|往我|对我|给)?"
    rf"(?:再|继续)?(?:{_SEND_ZH}|{_MSG_ZH})"
    rf"|(?:不想|不愿意?|不再|不要|不需要|不用|拒绝|不愿)再?(?:收|接收|收到|接|看)(?:到)?"
    r"|取消(?:订阅|推送|短信|消息|通知|营销|关注)"
    r"|(?:^|[^不没])退订|拒收|屏蔽(?:你们|短信|消息)|不接受(?:你们|短信|消息|推送|任何)"
    rf"|(?:停|关)(?:掉|止)?(?:{_MSG_ZH})|{_MSG_ZH}(?:关掉|停掉|取消掉?)"
    r"|(?:^|[^不])别(?:再)?(?:发|烦)了"
)
_RESUME_ZH = re.compile(
    r"(?:恢复|重新|继续|再次)(?:给我)?(?:接收|推送|订阅|发送?|收|开通)"
    rf"|(?:可以|能|请)(?:再|继续|重新)?(?:给我)?(?:发|推送)(?:{_MSG_ZH})?了"
    r"|还是(?:给我)?(?:发|推送)(?:吧|消息|短信)"
    rf"|(?:我)?(?:想|要|愿意|希望)(?:再|继续|重新)?(?:收到|接收|收)(?:你们的?)?{_MSG_ZH}"
    r"|(?:^|[^不取])(?:订阅|接受推送|接受消息|接受短信)"
    r"|(?:打开|开通|开启)(?:推送|通知|消息)"
)
_NOT_RESUME_ZH = re.compile(r"(?:不|别|没)(?:要|想|用)?(?:恢复|订阅|重新|再次|继续)")
_HOW_ZH = re.compile(
    r"(?:怎么|如何|怎样|咋)(?:才能|可以|能)?(?:退订|取消订阅|不接收|不收|关掉"
    r"|停止)"
)
_HOW_EN = re.compile(r"\bhow (?:do i|to|can i|can you|do you) (?:unsubscribe|stop|opt out|cancel)")
_MAYBE_ZH = re.compile(
    rf"{_MSG_ZH}(?:太多|好多|很多|太频繁|好烦|很烦|真烦)|太多(?:了)?(?:的)?{_MSG_ZH}"
    rf"|(?:天天|老是|一直|总是|每天都|又)(?:在)?(?:给我)?发|烦(?:死|人)|好烦|太烦|骚扰|垃圾{_MSG_ZH}"
    r"|(?:怎么|如何|怎样|咋)(?:才能)?(?:退订|取消订阅|取消|不接收|关掉|停止)"
    r"|少发|发(?:得|的)?太(?:多|勤|频繁)|别烦|能不能不发|可以不发吗|有完没完"
)

_STOP_EN = re.compile(
    r"\b(?:stop|quit|cease|end)(?: all)? (?:texting|messaging|sending|contacting|spamming|bothering"
    r"|emailing|the texts|the messages|your texts|your messages|these|those|all the|all|it now)"
    r"|\bstop (?:the |these |your |all )?(?:texts|messages|promos?|promotions|notifications|spam"
    r"|marketing)"
    r"|\b(?:do not|never|no longer) (?:text|message|contact|spam|bother|send) (?:me|us|this number)"
    r"|\b(?:do not|never) send (?:me )?(?:any )?(?:more )?(?:texts|messages|promos?|offers|ads"
    r"|spam)"
    r"|\bno more (?:texts|messages|promos?|promotions|marketing|spam|offers|ads)"
    r"|\bunsubscribe|\bopt (?:me )?out|\boptout"
    r"|\b(?:remove|take|delete) (?:me|my number) (?:off|from)"
    r"|\b(?:do not|no longer) want (?:to (?:get|receive) )?(?:any )?(?:more )?(?:of )?(?:your "
    r"|these |those |the )?"
    r"(?:texts|messages|promos?|marketing|offers|ads)"
    r"|\b(?:i want|i would like|please|pls) to (?:stop|quit) (?:getting|receiving)"
    r"|\bstop (?:getting|receiving|sending)"
)
_NOT_STOP_EN = re.compile(
    r"\b(?:do not|not|never|no need to|without) (?:unsubscribe|opt out|stop (?:the |sending"
    r"|texting|"
    r"messaging|messages|texts))"
    r"|\bnot (?:trying|going|asking) to (?:unsubscribe|stop|opt out)"
)
_LOOKALIKE_EN = re.compile(
    r"\bstop(?:ped|ping)? (?:by|in|at|over|off)\b|\bbus stop|\bnon ?stop|\bone ?stop|\bstopover"
)
_RESUME_EN = re.compile(
    r"\b(?:start|resume|restart|continue) (?:texting|messaging|sending|the messages|the texts|"
    r"messages|texts|notifications)"
    r"|\b(?:subscribe|sign) me (?:up )?(?:again|back)|\bresubscribe|\bopt (?:me )?(?:back )?in\b"
    r"|\b(?:send|text|message) me (?:\w+ )?(?:again|once more)"
    r"|\bi (?:want|would like) to (?:get|receive|hear) (?:your |the )?(?:texts|messages|news|offers"
    r"|updates|promos?)(?: again)?"
    r"|\b(?:turn|switch) (?:the )?(?:messages|texts|notifications) (?:back )?on"
    r"|\b(?:messages|texts) (?:back )?on again|\bsubscribe again"
)
_NOT_RESUME_EN = re.compile(r"\b(?:do not|not|never) (?:start|resume|subscribe|send)")
_MAYBE_EN = re.compile(
    r"\btoo many (?:texts|messages|promos?|ads)|\b(?:why|how come) (?:do )?you (?:keep |always )?"
    r"(?:text|texting|message|messaging|sending|spam)"
    r"|\b(?:annoying|spam|spamming|harass)|\bleave me alone|\bhow (?:do i|to|can i|can you) "
    r"(?:unsubscribe|stop|opt out|cancel)|\bfewer (?:texts|messages)|\bso many (?:texts|messages)"
    r"|\bstop it\b|\benough (?:texts|messages)|\bwho is this\b"
)


def consent(p: Prepared) -> str | None:
    """ "stop", "resume", "maybe_stop"; "negated" for a stop word said with a no
    (不用退订: not a stop, and no question for a person either); None otherwise."""
    zh, en = p.zh, p.text
    if _HOW_ZH.search(zh) or _HOW_EN.search(en):
        return "maybe_stop"
    if zh != en or any("\u4e00" <= c <= "\u9fff" for c in zh):
        if not _NOT_STOP_ZH.search(zh) and _STOP_ZH.search(zh):
            return "stop"
        if _RESUME_ZH.search(zh) and not _NOT_RESUME_ZH.search(zh):
            return "resume"
        if _MAYBE_ZH.search(zh) and not _NOT_STOP_ZH.search(zh):
            return "maybe_stop"
    if not _NOT_STOP_EN.search(en) and not _LOOKALIKE_EN.search(en) and _STOP_EN.search(en):
        return "stop"
    if _RESUME_EN.search(en) and not _NOT_RESUME_EN.search(en):
        return "resume"
    if _MAYBE_EN.search(en) and not _NOT_STOP_EN.search(en) and not _LOOKALIKE_EN.search(en):
        return "maybe_stop"
    if _NOT_STOP_ZH.search(zh) or _NOT_STOP_EN.search(en):
        return "negated"
    return None
