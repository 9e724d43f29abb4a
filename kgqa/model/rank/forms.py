"""What a question asks for and what an object looks like, by their wording alone (the answer-kind features), and
the character bigrams the overlap features share."""

from __future__ import annotations

import re

# The kind of answer a question asks for, by its wording. Each generalises across relations never seen in training.
QUESTION_KINDS: dict[str, re.Pattern[str]] = {
    "when": re.compile(r"什么时候|何时|哪年|哪一年|几年|哪天|哪一天|日期|时间|几月|多会|年份|生日|出生于?哪"),
    "number": re.compile(
        r"多少|多大|多高|多长|多重|多久|多远|多宽|多深|几[个位名种部岁次层家所条]|面积|人口|数量|海拔"
    ),
    "title": re.compile(
        r"哪部|哪本|什么书|哪个书|哪一部|哪一本|什么作品|哪些作品|代表作|作品|著作|书籍|专辑|歌曲|电影|小说"
    ),
    "where": re.compile(r"哪里|哪儿|在哪|什么地方|何地|何处|哪个国家|哪个城市|哪个省|哪国|位于|地址|地点|籍贯|出生地"),
    "who": re.compile(r"谁|哪位|什么人|何人|哪个人|作者|导演|主演|演唱|创始人|出品人|编剧"),
}
# The form of an object string.
_DATE = re.compile(r"\d{3,4}\s*年|\d{1,2}\s*月|\d{1,2}\s*日|\d{4}[-./]\d{1,2}|^\d{4}$|世纪|朝|代$")
_NUMBER = re.compile(r"\d|[一二三四五六七八九十百千万亿两]+[个米吨人岁层公里平方]")
_UNIT = re.compile(
    r"\d[\d.,]*\s*(?:[a-zA-Z%℃°]+|[个米吨人岁层元亩里尺斤克升秒分年天月周页部集章册首位名家所种条座]|平方|公里|小时|万|亿)"
)
_PLACE = re.compile(r"[省市县区州国镇乡村岛山河湖江路街道洲]$|省|市|县|中国|美国|日本|英国|北京|上海")
_PERSON = re.compile(r"^[\u4e00-\u9fff·]{2,4}(?:[、，,][\u4e00-\u9fff·]{2,4})*$")


def object_forms(obj: str) -> dict[str, float]:
    obj = obj.strip()
    return {
        "when": float(bool(_DATE.search(obj))),
        "number": float(bool(_NUMBER.search(obj))),
        "unit": float(bool(_UNIT.search(obj))),
        "title": float("《" in obj),
        "where": float(bool(_PLACE.search(obj))),
        "who": float(bool(_PERSON.match(obj))),
    }


def question_kinds(question: str) -> dict[str, float]:
    return {kind: float(bool(pattern.search(question))) for kind, pattern in QUESTION_KINDS.items()}


def bigrams(text: str) -> set[str]:
    return {text[i : i + 2] for i in range(len(text) - 1)}


def bigram_share(part: str, whole: str) -> float:
    grams = bigrams(part)
    return len(grams & bigrams(whole)) / len(grams) if grams else 0.0
