"""The meaning patterns of `scheduler.meaning`: per concept, regular expressions over
normalised text (NFKC, case-folded: ，？！ are already , ? !). Data, in table order: the
first concept that matches names the finding. Each pattern pairs what a clause does
with what it is about; the comments give an example it catches and one it must not.
"""

from __future__ import annotations

import re


def alt(*options: str) -> str:
    """``(?:a|b|…)``."""
    return "(?:" + "|".join(options) + ")"


def w(words: str) -> list[str]:
    """The space-separated pieces of `words`."""
    return words.split()


C = r"[^,.!?;:。、\n]"
"""One character inside a clause."""
NUM = r"[\d一二两三四五六七八九十百千几]"
STORE = alt(*w("店 门店 店铺 专柜 柜台 本店 新店 分店 旗舰店 实体店 门市 展厅 商场"))
GARMENT = alt(
    *w("衣服 衣裳 新衣 大衣 外套 风衣 羽绒服 棉服 毛衣 毛衫 羊毛衫 羊绒衫 针织衫 开衫 卫衣 衬衫"),
    *w("t恤 西装 裤子 裤 裙子 裙 连衣裙 鞋子 鞋 靴子 靴 围巾 丝巾 披肩 帽子 手套 包包 手袋"),
    *w("皮包 单品 服装 衣物 款式 羊绒 真丝 针织 冬季款 秋冬款 春夏款"),
    "[春夏秋冬]装",
)
SEASON_GOODS = alt(
    "[春夏秋冬]装", "秋冬款", "春夏款", "[春夏秋冬]季款",
    alt("新", "当", "应", "这") + "季(?:的)?" + alt("新品", "款", "衣服", "系列", "服装"),
)  # fmt: skip
NOT_NEG = r"(?<![没不别])(?<!没有)(?<!不再)"
"""Not right after a negation: 没来店里 is no invitation."""
EN_GOODS = alt(
    *w(r"collection range line styles? pieces? items? stock arrivals? designs? colou?rs?"),
    *w(r"knits? knitwear coats? jackets? dress(?:es)? skirts? boots? shoes? sweaters?"),
    *w(r"jumpers? cardigans? scarf scarves bags? shirts? blouses? trousers jeans outfits?"),
    r"looks?", r"season's \w+",
)  # fmt: skip
EN_GOOD_WORDS = alt(
    *w("great lovely perfect amazing gorgeous good fab fantastic stunning beautiful")
)

PATTERNS: dict[str, tuple[str, ...]] = {
    "invitation": (
        # 来店里 / 到店 / 回店里 / 光临本店 — not 没来店里
        NOT_NEG
        + alt(*w("来 到 回 进 过来 回来 光临 莅临 光顾"))
        + r"(?:一下|一趟|下)?(?:我们)?(?:的)?"
        + STORE,
        # 来看看 / 过来坐坐 / 一起来挑 — not 出来走走, 站起来
        NOT_NEG
        + r"(?:(?<=一起)|(?<![出起醒站]))(?:来|过来|回来)(?:店里)?"
        + alt(*w("看看 瞧瞧 瞅瞅 逛逛 逛 坐坐 坐 玩 转转 挑 选 试 喝 领 拿 取 参加 凑")),
        r"欢迎(?:您|你|大家)?(?:和\w{1,4})?(?:再|常|随时|有空|多)?"
        + alt(*w("来 过来 回来 光临 莅临 到 回 选购 试穿 参加 报名 预约")),
        r"(?:敬请|恭候|期待您的?)(?:光临|莅临|到来)",
        # 随时过来, 有空再来 — not 随时联系
        r"(?:随时|有空|得空|抽空|有时间|方便的话|改天)(?:再|就)?(?:过来|来|回来)(?!了|电|信)",
        r"(?:我们|店里)?(?:等您|等你)(?:来|过来|哦|呀|$|[,.!。])",
        # pop in, come by — not "come in handy"
        r"\b(?:come|pop|drop|swing|stop|nip|head|call)(?: on)? "
        r"(?:in|by|over|round|around|down|along)\b(?! handy)",
        r"\bcome (?:and |to )?"
        + alt(*w("see visit browse shop try look check pick join"), "have a look", "say hi"),
        r"\b(?:visit|see|join) us\b|\bcome (?:and )?celebrate\b",
        r"\b(?:when|next time|whenever|if|once) you(?:'re| are)? "
        r"(?:visit|pop|drop|come|stop|swing|passing|nearby|in store|in the store)\b",
        r"\b(?:welcome you back|see you (?:in|at) (?:the |our )?(?:store|shop|boutique))",
        # come into the shop — not "thinking of you at the store"
        r"\b(?:see you|come|coming|pop|drop|stop|swing|head|back|visit|welcome you)(?: \w+){0,2} "
        r"(?:in|into|to|at|by|round|around) (?:the|our) "
        + alt(*w("store shop boutique showroom counter studio"))
        + r"\b",
        r"\bin[- ]store\b",
        r"\b(?:have|take) a look around\b",
    ),
    "shopping": (
        r"选购|挑选|采购|下单|入手|抢购|订购|囤货|剁手|试穿|换购|添置",
        r"(?:买|购)(?:" + NUM + r"|一|两)?(?:件|套|条|双|身|个)",
        # 买件大衣 — not 添件衣服
        r"(?:买|购)" + C + r"{0,4}?" + GARMENT,
        r"(?:现在|趁早|趁现在|赶紧|赶快|快)(?:就)?(?:买|入|下手|下单|订)",
        # shop with us — not "the shop team", "holiday shopping"
        r"\b(?:shop|shopping|browse|browsing) (?:with us|now|our|around|in[- ]store|"
        r"the (?:new|latest|collection|range|sale))\b",
        r"\b(?:come|go|pop|head) (?:in )?(?:shopping|browsing)\b|\bbrows(?:e|ing)\b",
        r"\btreat yourself\b|\bgrab (?:one|yours|it)\b|\bsnap (?:one |it )?up\b",
        r"\btry (?:it|them|one|something) on\b",
        r"\b(?:add|adding) (?:\w+ ){0,3}to your wardrobe\b",
    ),
    "arrival": (
        # 冬装 — not 冬天
        SEASON_GOODS,
        r"新(?:到|进|上|出|推出)(?:了)?(?:的|一批|几款|几件|一些|好多|很多)?"
        + C
        + r"{0,4}?"
        + alt(GARMENT, "货", "款", "色", "系列"),
        r"(?:进|到|来|上)了(?:一批|几款|几件|一些新|好多新|很多新)",
        r"(?:新|刚|刚刚|刚好|又)?(?:进了|上了|新到)" + C + r"{0,6}?" + GARMENT,
        alt(GARMENT, "货", "系列") + r"(?:又|也|终于)?(?:回来了|回归|又来了|补回来了)",
        r"(?:最火|最热|最好卖|卖得最好|最受欢迎|畅销|人气|热门)的?"
        + C
        + r"{0,4}?"
        + alt("款", GARMENT),
        alt(
            *w("上架 上市 发布会 推出 补货 补到货 有货 现货 断码 断货 返场 售罄 卖得 抢手"),
            *w("热卖 爆款 限量 限定 联名 新色 新衣"),
            "新装(?!修)",
        ),
        alt(GARMENT, "货", "系列")
        + r"(?:都|已经|也|终于|陆续|刚|又)?"
        + alt(*w("到了 来了 到啦 来啦 到店 上了 已到 齐了 出来了 到货")),
        r"(?<!人)" + alt(GARMENT, "货", "系列") + C + r"{0,6}?(?:陆续)?(?:到了|到店|上了|已到)",
        # the new collection — not "the new year", "the new season" alone
        r"\b(?:new|latest|fresh|newest)(?: season's| seasons?)? " + EN_GOODS + r"\b",
        r"\b(?:autumn|winter|spring|summer|fall|holiday|festive|season's|new-season|"
        r"this season's) " + EN_GOODS + r"\b",
        # the knits are in — not "spring has arrived"
        r"\b" + EN_GOODS + r"\b[^.!?]{0,20}\b(?:is|are|has|have|just)? ?"
        r"(?:here|in|arrived|landed|dropped|out now|available)\b"
        r"(?! (?:the|a|an|your|my|our) (?!size))",
        r"\bback in (?:stock|your size)\b|\bjust (?:in|arrived|landed|dropped)\b",
        r"\brestock(?:ed|s)?\b|\btake a peek\b",
        r"\b(?:edit|capsule|drop|lookbook) is (?:live|here|out)\b",
        r"\b(?:see|check out|discover|find out) what's new\b",
        r"\bwhat's new (?:in|at) (?:the |our )?(?:store|shop)",
    ),
    "store_event": (
        r"(?<![您你])"
        + alt(
            *w("店庆 周年庆 庆典 新店 分店 开张 沙龙 派对 酒会 茶话会 品鉴会 发布会 见面会"),
            *w("时装秀 走秀 秀场 抽奖 嘉年华 答谢会 开放日 诚邀 邀请您 邀您 报名 名额 回馈"),
            *w("会员日 会员活动 会员专场"),
        ),
        # 我们店的十周年 — not 成为我们会员3周年
        r"(?:店|品牌)(?:的)?" + C + r"{0,4}?周年",
        # our opening — not 祝您新店开业大吉
        r"(?<![您你])(?<!您的)(?<!你的)开业(?!大吉|快乐|顺利|兴隆)",
        r"\bour \d+(?:st|nd|rd|th) (?:birthday|anniversary)\b",
        r"我们(?:搬|搬到|搬了|换了新)(?:新)?(?:地址|家|店|地方)",
        r"\b(?:store|shop|boutique|brand)(?:'s)? "
        r"(?:anniversary|birthday party|opening|party|event|celebration|sale)\b",
        r"\b(?:grand opening|open house|trunk show|fashion show|launch party|pop-up|workshop|rsvp|"
        r"private (?:viewing|shopping|event)|members'? (?:evening|night|event|day|party)|"
        r"styling (?:evening|night|event|session|party))\b",
        r"\b(?:you're|you are) (?:invited|warmly invited)\b|\bjoin us\b|\bcelebrate with us\b",
        r"\bwe're (?:celebrating|hosting|holding|throwing)\b",
        r"\b(?:hosting|holding|throwing) (?:a|an|our) \w+",
        r"\b(?:we've|we have|we just) opened\b|\bopens? (?:next|this|on)\b",
    ),
    "held_item": (
        # 给您留了, 帮您挑了 — not 给您留言
        r"(?:给|为|帮|替)(?:您|你)"
        + alt(
            *w("预留 保留 留着 精选 挑选 搭配 推荐 介绍 挑 选 备 准备 订 调 找 定做"),
            "留(?![言意步念])",
        )
        + r"(?:了|好|着|下|出)?",
        r"(?:留|预留|保留|留着|收着|存着|订)(?:了|下|好)?(?:一|两|几|最后一)"
        r"(?:件|条|双|套|款|个|顶|只)",
        r"(?:最后一|仅剩|只剩|还剩)(?:件|条|双|套|批|个|款)|先到先得|数量(?:不多|有限)",
        r"售完即止|手慢无|错过(?:就|再|可)|(?:别|不要|千万别|莫)错过",
        r"\b(?:put|set|kept|keep|saved|save|held|hold|reserved|reserve|earmarked|picked|pick)"
        r"(?: [a-z'-]+){0,7} (?:aside|back|out)\b",
        r"\b(?:kept|saved|held|reserved|set aside|put aside|put by|picked out)"
        r"(?: [a-z'-]+){0,7} for you\b",
        r"\bbefore (?:they're|they are|it's|it is) gone\b|\bwhile stocks last\b",
        r"\b(?:something|a little something|a surprise|something special) "
        r"(?:\w+ )?(?:waiting )?for you\b",
        r"\bwaiting for you (?:at|in) (?:the |our )?(?:counter|store|shop|boutique)\b",
        r"\bthe last (?:one|few|piece)\b|\bdon't miss\b",
    ),
    "price": (
        alt(
            *w(
                "涨价 价格 价钱 原价 现价 特价 低价 半价 会员价 专享价 优惠价 到手价 划算 便宜 实惠"
            ),
            *w("省钱 低至 仅需 只需 多少钱 清货 清仓 甩卖 特卖 返现 充值 储值 折扣 打折 力度"),
        ),
        # 只要六百 — not 只要您开心
        r"(?:只要|才|仅)" + NUM + r"+",
        # 六百多 — not 长命百岁
        r"(?<![\d一二两三四五六七八九十百千几年])" + NUM + r"{1,3}[百千](?:多|块|元)?"
        r"(?!岁|年|个|次|遍|里|万|米|公里|倍|位|人)",
        r"\d+\s*(?:块|元(?![旦宵])|刀)",
        r"买" + NUM + r"送" + NUM + r"|满" + NUM + r"+|减" + NUM + r"+",
        # only 199 yuan — not "just 5 days"
        r"\b(?:only|just|from|for|at|now) (?:rmb |cny |us)?[$¥€£]?\s?\d[\d,.]*\s?"
        r"(?:yuan|rmb|kuai|dollars|bucks)?\b"
        r"(?! (?:years?|days?|weeks?|months?|am|pm|o'clock|kids|people))",
        r"\b\d[\d,.]* ?(?:yuan|rmb|kuai|dollars|bucks)\b",
        r"\bspend \$?\d+|\bget \$?\d+ (?:back|off)\b|\bhalf[- ]price\b",
        r"\b(?:cheap|cheaper|bargains?|affordable)\b|\bsave (?:up to|\$?\d+|on)\b|\bsavings\b",
    ),
    "benefit": (
        r"福利|礼品|赠品|赠送|好礼|礼包|礼券|红包|免费|领取|专享|尊享|独享|权益|特权|vip",
        # 送您一份礼物 — not 送上祝福
        r"(?:送|领|拿|准备了?|备了?|有)(?:您|你)?(?:一份|一个|一张|份|个|张)?(?:小|精美)?"
        r"(?:礼物|礼|惊喜|点心|咖啡|小吃)",
        r"(?:到店|来店|进店)" + C + r"{0,4}?(?:有|送|领|享)",
        r"专属(?:福利|优惠|礼|权益|折扣|价)",
        r"(?:等级|会员|级别)" + C + r"{0,3}?(?:升级|升了|晋级)",
        r"\b(?:complimentary|perks?|rewards?|bonus|voucher|coupon|redeem|privileges?)\b",
        # a free alteration — not "some free time"
        r"\b(?:free|a little|your|birthday) "
        + alt(
            *w("gifts? alterations? styling delivery shipping coffee drinks? samples?"),
            *w("sessions? fittings? tailoring treats?"),
        )
        + r"\b",
        r"\bgifts?\b(?! (?:of|to know))",
        r"\bexclusive\b|\bfor free\b|\bon the house\b",
    ),
    "points": (
        r"积分[^。.!?\n]{0,14}?" + alt(*w("换 兑 抵 用 清零 过期 到期 翻倍 加倍 送 返 领 享")),
        alt(*w("换 兑 用 送 返 赠 加倍 双倍 翻倍 多倍 攒")) + C + r"{0,6}?积分",
        r"\b(?:your|bonus|double|triple|extra|member|reward|loyalty) points\b",
        r"\bpoints?\b[^.!?]{0,30}\b"
        + alt(*w("redeem exchang expir gift spend swap convert trade claim"), "turn into"),
        r"\b(?:redeem|use|spend|swap|exchange|convert|earn|trade) (?:your |all |those )?points\b",
    ),
    "product_push": (
        # 很适合您 — not 适合带孩子出去走走
        r"(?:很|特别|超|非常|挺|真|最|会)?(?:适合|衬|配)(?:您|你)(?:的)?"
        r"(?:气质|肤色|身材|风格|身形)?",
        r"穿"
        + C
        + r"{0,6}?(?:一定|肯定|会很|很|特别|超|更)"
        + alt(*w("好看 漂亮 显瘦 显白 精神 合身 有气质")),
        # 这款, 那件 — not 这件事
        r"(?<![这那])[这那一两几多新同爆](?:一)?款(?!项)",
        r"(?:这|那)(?:件|条|双|套)(?!事|路|消息|短信|新闻|房)",
        r"\d+码|(?<![a-z])(?:xs|s|m|l|xl|xxl)码|尺码|码数|尺寸",
        GARMENT + C + r"{0,8}?(?:推荐|好看|漂亮|很衬|适合您|拍给|发您|照片|剩|卖)",
        r"(?:推荐|拍给您|发您看|给您看)" + C + r"{0,8}?" + GARMENT,
        r"\b(?:would|will|'d|should) (?:look|suit|fit) (?:\w+ )?"
        + EN_GOOD_WORDS
        + r"(?: on you)?\b",
        r"\b(?:would|will|'d) suit you\b|\bsuit you (?:perfectly|well|so well|beautifully)\b",
        r"\blook (?:great|lovely|amazing|gorgeous) on you\b|\b(?:in|of) your (?:size|colou?r)\b",
        r"\b(?:think|know|sure|bet) you'(?:d|ll) (?:like|love)\b",
        r"\bshow you (?:\w+ ){0,3}(?:pieces|styles|items|new|looks|outfits|colou?rs)\b",
        r"\b(?:pieces|styles|items|outfits|ones?) (?:that|which) (?:would|will) (?:suit|fit)\b",
        r"\bwardrobe\b",
    ),
    "prying": (
        # 怎么都不来了, 为啥不来逛了 — not 最近怎么样, 好久不见
        r"(?:为什么|为啥|为何|怎么|咋|何故|怎的)"
        + C
        + r"{0,8}?(?:不|没|没有)(?:再)?"
        + alt(*w("来 过来 光顾 逛 联系 回来 见 露面 消息 动静 出现")),
        r"(?:不来|没来|没再来|不再来|不来了)的?(?:原因|理由)|什么原因",
        # 是不是我们哪里做得不好, 是不是去别的店了 — not 是不是又变漂亮了
        r"(?:是不是|是否|难道)"
        + C
        + r"{0,14}?"
        + alt(
            *w("不满 失望 不开心 不高兴 意见 顾虑 不喜欢 嫌 得罪 怠慢 没做好 做得不好 不好"),
            *w("说错 做错 忘了 忘记 发生 遇到 不舒服 困难 不方便 没来 不来"),
            "生" + C + "{0,4}气",
            "不合" + C + "{0,2}心意",
            "换" + C + "{0,2}(?:家|店)",
            "别(?:家|的店|处)",
            "其他(?:店|家|品牌)",
            "出" + C + "{0,3}事",
        ),
        r"是"
        + C
        + r"{0,12}?"
        + alt(
            *w("不满 失望 不开心 不高兴 生气 意见 没做好 做得不好 做错 说错 得罪 怠慢 遇到"),
            "不舒服",
            "困难",
        )
        + C
        + r"{0,6}?(?:吗|么|嘛|呢)",
        r"(?:我们|我|店里)"
        + C
        + r"{0,6}?"
        + alt(
            *w("做得不好 做的不好 做得不够 没做好 做错 说错 照顾不周 不周到 不到位 得罪 怠慢"),
            "服务得?不好",
        ),
        r"(?:对我们|对店里|对我)(?:有)?(?:什么)?(?:意见|不满|失望)",
        r"出(?:了)?(?:什么|啥)(?:事|状况|问题|情况)|(?:遇到|碰到|遇上)(?:了)?(?:什么|啥)",
        r"(?:去|在|换|到)(?:了)?(?:别家|别的店|别的地方|其他店|其他家|其他品牌|别处)",
        # why haven't you been in — not "how have you been"
        r"\bwhy\b[^.?!]{0,40}\b"
        + alt(
            *w("come coming came visit visiting anymore shop stopped"),
            "been in",
            "been by",
            "been around",
            "seen you",
            "see you",
            "stay(?:ed)? away",
            "staying away",
            "any more",
            "no longer",
        ),
        r"\b(?:did|have|has|was it|is it|is there)\b[^.?!]{0,30}\b(?:we|us|our)\b[^.?!]{0,30}"
        + alt(*w("wrong upset disappoint offend bother annoy"), "let you down"),
        alt(
            *w("upset unhappy angry annoyed disappointed dissatisfied displeased cross"),
            "not happy",
            "not satisfied",
        )
        + r" (?:with|at|by) (?:us|our|the|me)\b",
        r"\b(?:something|anything)(?: that)? (?:happen|the matter|wrong|bothering)",
        r"\bwhat (?:happened|went wrong|'s wrong|is wrong|kept you|made you)",
        r"\b(?:kept|keeps|keeping) you (?:away|from)\b|\bstay(?:ed|ing)? away\b|\bmade you stop\b",
        r"\bstopped (?:coming|visiting|shopping|dropping)|\breason (?:you|why)\b",
        r"\b(?:shopping|shop|buying) (?:somewhere|elsewhere|at another|with another|at other)",
        r"\b(?:another|other|different) (?:store|shop|brand)s?\b",
        r"\b(?:problem|issue|wrong) with (?:your|our|the)(?: last| recent)? "
        r"(?:visit|purchase|order|service|experience)",
        r"\b(?:go|went|gone|going) wrong\b|\b(?:could|should) have done better\b",
        r"\bforg[eo]t(?:ten)? (?:about )?us\b",
    ),
}

THANKS_FOR_VISITING = re.compile(
    r"(?:谢谢|感谢|多谢)(?:您|你)?(?:今天|上次|昨天|那天|前几天|之前|刚才|一直)?"
    r"(?:来|到|光临|光顾|过来|来到)(?:我们)?(?:店里|店|本店|这里)?"
    r"|\bthank(?:s| you) for (?:coming|visiting|stopping|dropping|popping)(?: (?:in|by))?\b"
)
"""Gratitude for a visit already made (谢谢您今天来店里, "thanks for coming in"): masked
before the promotion patterns look — it invites nothing."""
