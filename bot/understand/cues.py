"""The cues of each meaning: (pattern, weight) pairs over the prepared text.

Chinese patterns read `Prepared.zh` (no spaces), English ones `Prepared.text`
(single spaces, word boundaries). A meaning's score is the sum of the weights of
its patterns that occur; `bot.understand.engine` decides between the scores.
Weights: 3 = says the meaning on its own ("积分", "兑换", "redeem"); 2 = strong
but shared ("多少分", "card"); 1 = a hint ("会员卡").
"""

from __future__ import annotations

import re

from bot.router import Intent

Cue = tuple[re.Pattern[str], int]


def _cues(*pairs: tuple[str, int]) -> tuple[Cue, ...]:
    return tuple((re.compile(p), w) for p, w in pairs)


GREET, THANKS, OK, BYE, YES, NO = "greet", "thanks", "ok", "bye", "yes", "no"
"""Kinds of small talk. YES ("好的", "可以", "👍", "sure") also answers a question the bot
asked (`bot.bot`: it confirms a pending redemption, mailing or stop); NO ("算了",
"不用了", "never mind") and OK ("收到", "知道了", "got it") do not."""

ZH: dict[Intent, tuple[Cue, ...]] = {
    Intent.POINTS: _cues(
        (r"积分|分数|查分|余额", 3),
        (r"(?:多少|几|剩)分|分(?:有多少|还剩|够不够)|攒了多少|积了多少|有多少分", 3),
    ),
    Intent.REDEEM: _cues(
        (
            r"兑换|兑|礼品|奖品|好礼|换礼|能换|可以换|换点|换个|换一张|换张|换什么|换哪|换成|换券"
            r"|换代金券",
            3,
        ),
        (r"(?<![退调更])换(?![货尺码号大小颜色一件件款季位人班手机])", 2),
        (r"抵扣|抵现|抵钱|当钱用|积分(?:有什么用|怎么用|能干什么|能做什么|能用吗)|用积分", 3),
        (
            r"(?:我要|想要|领|拿|要一张|来一张|给我)[0-9一二两三四五六七八九十百]*(?:元"
            r"|块)?的?(?:代金)?券"
            r"|^[0-9]+(?:元|块)?的?(?:代金)?券(?:吧|呢)?$|换[0-9一二两三四五六七八九十百]+(?:元"
            r"|块)?的?(?:代金)?券",
            3,
        ),
    ),
    Intent.VOUCHERS: _cues(
        (r"券|优惠码|券码|兑换码|代金|折扣码", 3),
        (r"(?:兑|换|领)(?:到|过)?的(?:代金|优惠)?券|券(?:在哪|呢$|还能用)", 5),
    ),
    Intent.PICKUP: _cues(
        (r"领卡|取卡|拿卡|提卡|(?:领|取|拿)(?:会员|金|银|白金|钻石|新|实体)?卡", 3),
        (r"卡.{0,6}(?:好了|到了|下来|办好|做好|出来|批|审|进度|怎么样|到哪|寄到|办得)", 2),
        (r"(?:来|去|到)(?:店里?|门店|店铺|柜台)?(?:领|取|拿)|(?:领|取|拿)(?:一下|下)?$", 1),
        (r"会员卡|金卡|银卡|白金卡|钻石卡|新卡|实体卡|卡片", 1),
        (r"(?:^|和|跟|的)卡(?:$|和|跟|呢)", 2),
    ),
    Intent.MAIL: _cues(
        (r"寄(?!存)|邮寄|快递|邮过来|邮给我|送到家|送过来|送上门|顺丰|到付", 3),
    ),
    Intent.HELP: _cues(
        (
            r"帮助|怎么用|如何使用|使用说明|能做什么|能干什么|会什么|有什么功能|功能|菜单|指令"
            r"|命令",
            2,
        ),
        (
            r"教程|不会用|怎么玩|能干吗|能查什么|可以查什么|可以做什么|怎么操作|支持什么|有哪些服务"
            r"|回复什么|发什么",
            2,
        ),
    ),
    Intent.BIND: _cues(
        (r"绑定|(?<!解)绑(?!带)|关联(?:会员|手机|账号|帐号)?|认证会员|登记手机", 3),
    ),
    Intent.CONFIRM: _cues(
        (r"^(?:是的?|对|好的?|嗯)?(?:我)?(?:确认|确定)(?!吗|不|么)", 5),
    ),
    Intent.HANDOFF: _cues(
        (r"有货|有没有货|缺货|库存|到货|补货|断码|还有没有|还有吗|现货|调货", 4),
        (
            r"[smlx]{1,3}码|大码|小码|尺码|尺寸|码数|多大码|什么码|几码|穿多大|合身|偏大|偏小|腰围"
            r"|身高|体重",
            4,
        ),
        (r"改(?:裤|短|长|小|大|衣|一下|腰)|修改|裁剪|修补|裤脚|锁边|干洗|洗涤|保养|熨", 4),
        (
            r"退货|退款|退钱|换货|退换|换(?:个|一个|一件)?(?:尺码|码|号|颜色|款|大|小)|退掉|能退吗"
            r"|七天",
            4,
        ),
        (
            r"投诉|质量|起球|掉色|褪色|缩水|破了|坏了|开线|脱线|不满意|态度|差评|被骗|太差|不对|错了"
            r"|少了|没到账|不到账|"
            r"没有到账|不能用|用不了|没收到|收不到|算错|扣错|怎么回事|为什么没有|为什么少|不见了",
            4,
        ),
        (
            r"店员|导购|店长|人工|客服|真人|找人|有人吗|有人在|[\u4e00-\u9fff]{2,3}(?:在吗|在不在"
            r"|在么)|"
            r"(?:找|叫|请)[\u4e00-\u9fff]{1,2}(?:姐|哥|老师|经理)|联系(?:我|店)|回电|打电话",
            4,
        ),
        (
            r"多少钱|价格|价钱|打折|折扣|优惠活动|新款|新品|上新|款式|颜色|面料|材质|成分|同款|预留"
            r"|留一件",
            3,
        ),
        (r"能用券|可以用券|用券吗|能不能用券|券能用在", 4),
        (
            r"大衣|外套|羽绒|毛衣|羊绒|羊毛|裙|裤|衬衫|t恤|鞋|包|围巾|西装|风衣|卫衣|针织|皮衣|帽|这件"
            r"|那件|这款|那款",
            2,
        ),
        (r"营业|几点|关门|开门|停车|预约|发票|订单|物流|到哪了|门店电话|店在|店铺在", 3),
        (r"地址|在哪|怎么走", 2),
    ),
    Intent.SMALLTALK: _cues(
        (
            r"你好|您好|哈喽|嗨|在吗|在不在|在么|早上好|早安|上午好|中午好|下午好|晚上好|^早$|^早啊"
            r"|^hi$",
            1,
        ),
        (r"谢谢|多谢|感谢|谢啦|辛苦|麻烦你了|太好了|棒|赞", 1),
        (
            r"^(?:好的?|嗯+|哦+|噢|收到|知道了|明白|了解|行|可以|好嘞|好滴|ok|好吧|没问题|没事|不用了"
            r"|算了|是的?|对的?)+$",
            1,
        ),
        (r"再见|拜拜|晚安|回头见|下次见", 1),
    ),
}

EN: dict[Intent, tuple[Cue, ...]] = {
    Intent.POINTS: _cues(
        (r"\bpoints?\b|\bbalance\b|\bscore\b", 3),
    ),
    Intent.REDEEM: _cues(
        (r"\bredeem|\brewards?\b|\bgifts?\b|\bprizes?\b|\bcash in\b|\bspend (?:my )?points", 3),
        (r"\b(?:swap|exchange|trade|convert|use|turn) (?:my |the |some )?(?:\d+ )?points", 3),
        (
            r"\btrade in\b|\b(?:item|reward|option|number) [0-9]\b|\bwhat can i get\b"
            r"|\bpoints (?:for|into) (?:a |the )?vouchers|\bget (?:a|the|one|my) .*vouchers",
            3,
        ),
    ),
    Intent.VOUCHERS: _cues(
        (r"\bvouchers\b|\bcoupons?\b|\bdiscount codes?\b|\bgift cards?\b", 3),
    ),
    Intent.PICKUP: _cues(
        (
            r"\bpick ?(?:it |my card |the card )?up\b|\bpickup\b|\bcollect\b|\bcome (?:in|by"
            r"|and get)",
            3,
        ),
        (
            r"\b(?:member(?:ship)?|gold|silver|platinum|new|my|the) cards?\b|\bcard (?:ready|status"
            r"|done|arrived)",
            2,
        ),
        (r"\bcards?\b", 1),
    ),
    Intent.MAIL: _cues(
        (
            r"\bmail\b|\bmailed\b|\bpost(?:ed)? (?:it|the card|my card)|\bby post\b|\bship\b"
            r"|\bdeliver|"
            r"\bcourier\b|\bsend (?:it|the card|my card)(?: to| by| over| home)",
            3,
        ),
    ),
    Intent.HELP: _cues(
        (
            r"\bhelp\b|\bmenu\b|\bcommands?\b|\bwhat can (?:you|i) (?:do|ask|say|send|type)|"
            r"\bhow (?:does|do) (?:this|it|you) work|\boptions\b|\binstructions\b|\bguide\b"
            r"|\bwhat do i (?:type|send)",
            2,
        ),
    ),
    Intent.BIND: _cues(
        (
            r"\bbind\b|\blink (?:my |this )?(?:account|membership|number|phone|wechat)|"
            r"\bconnect (?:my |this )?(?:account|membership|wechat)",
            3,
        ),
    ),
    Intent.CONFIRM: _cues(
        (
            r"^(?:(?:yes|yep|yeah|sure|ok) ?)?(?:please )?(?:i )?(?:confirm|go ahead|do it)\b"
            r"|^yes please\b|^yes,? (?:confirm|do it)",
            5,
        ),
    ),
    Intent.HANDOFF: _cues(
        (r"\bin stock\b|\bstock\b|\bavailable in\b|\bsold out\b|\brestock|\bback in\b", 4),
        (
            r"\bsizes?\b|\bxs\b|\bxl\b|\bxxl\b|\bfit\b|\bfits\b|\btoo (?:big|small|long|short|tight"
            r"|loose)\b",
            4,
        ),
        (r"\balter|\bhem\b|\btailor|\bshorten|\blengthen|\brepair|\bdry clean|\bwash", 4),
        (
            r"\breturn\b|\brefund|\bexchange (?!(?:my |the |some )?(?:\d+ )?points)|\bgive back\b"
            r"|\bmoney back",
            4,
        ),
        (
            r"\bcomplain|\bcomplaint|\bbroken\b|\bdamaged\b|\bfaulty\b|\bquality\b|\brude\b|\bwrong\b"
            r"|\bmissing\b|"
            r"\bnot (?:working|received|showing|right)|\bdid not (?:get|receive)|\bdoes not work"
            r"|\bnever (?:got|received)",
            4,
        ),
        (
            r"\bmanager\b|\bstaff\b|\bassistant\b|\bhuman\b|\breal person\b|\bsomeone\b"
            r"|\bsomebody\b|\btalk to\b|"
            r"\bspeak (?:to|with)\b|\bcall me\b|\bis [a-z]+ (?:there|in|around|working)",
            4,
        ),
        (
            r"\bprice\b|\bhow much\b(?! (?:points|pts))|\bcost\b|\bsale\b|\bdiscount\b"
            r"|\bnew arrivals?\b|\bcolou?rs?\b|\bmaterial\b|"
            r"\bhold (?:it|one|the)\b|\breserve\b",
            3,
        ),
        (
            r"\bcoats?\b|\bdress(?:es)?\b|\bjackets?\b|\bsweaters?\b|\bshirts?\b|\btrousers\b"
            r"|\bpants\b|\bshoes\b|"
            r"\bbags?\b|\bscarf|\bcashmere\b|\bwool\b|\bskirts?\b|\bsuit\b|\bt ?shirts?\b"
            r"|\bjeans\b",
            2,
        ),
        (
            r"\bopening hours\b|\bopen\b|\bclose\b|\bclosing\b|\bparking\b|\binvoice\b|"
            r"\breceipt\b|\border\b|\bhours\b|\bstop by\b|\bdrop by\b|\bappointment\b",
            3,
        ),
        (r"\baddress\b|\bwhere is\b", 2),
    ),
    Intent.SMALLTALK: _cues(
        (
            r"^(?:hi|hey|yo|morning|good (?:morning|afternoon|evening|day)|greetings"
            r"|are you there)\b",
            1,
        ),
        (
            r"\bthanks\b|\bappreciate|\bcheers\b|\bgreat\b|\bawesome\b|\bperfect\b|\blovely\b"
            r"|\bnice\b",
            1,
        ),
        (
            r"^(?:ok|sure|alright|got it|understood|noted|fine|cool|good|yes|yep|no problem"
            r"|never ?mind|nvm)+(?: ok)?$",
            1,
        ),
        (r"\bbye\b|\bsee you\b|\bgood ?night\b|\btake care\b|\bhave a nice\b", 1),
    ),
}

SMALLTALK_KIND: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), kind)
    for p, kind in (
        (r"谢|感谢|辛苦|麻烦你了|\bthanks\b|\bappreciate|\bcheers\b", THANKS),
        (
            r"再见|拜拜|晚安|回头见|下次见|\bbye\b|\bsee you\b|\bgood ?night\b|\btake care\b"
            r"|\bhave a nice\b",
            BYE,
        ),
        (
            r"你好|您好|哈喽|嗨|在吗|在不在|在么|早|上午好|中午好|下午好|晚上好|\bhi\b|\bhey\b|\byo\b"
            r"|\bmorning\b|"
            r"\bgood (?:morning|afternoon|evening|day)\b|\bgreetings\b|\bare you there\b",
            GREET,
        ),
        (
            r"^(?:好的?|好吧|好嘞|好滴|可以|行|是的?|对的?|嗯+|没问题|ok|okay|sure|yes|yep|yeah"
            r"|yes please)$",
            YES,
        ),
        (r"不用了|算了|没事|不要了|\bnever ?mind\b|\bnvm\b|\bno thanks\b", NO),
    )
)
