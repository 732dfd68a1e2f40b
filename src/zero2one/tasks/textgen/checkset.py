"""A small held-out set for checking a pretrained language model's exports and compressions
when it has no data of its own (``zero2one export builtin:smollm2-135m-instruct``): everyday
chat turns in English and Chinese, with plain, correct answers. It measures whether a converted
model still computes what the original does (logits, perplexity), not how good either is."""

from __future__ import annotations

import hashlib
import json
from typing import Any

SOURCE = "zero2one's built-in check set"

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many days are in a week?", "A week has seven days."),
    ("Name three primary colours.", "Red, blue and yellow are the traditional primary colours."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
    ("Translate 'thank you' into French.", "'Thank you' in French is 'merci'."),
    ("What is 12 times 12?", "12 times 12 is 144."),
    ("Why is the sky blue?", "Air scatters blue light more than red light, so the sky looks "
     "blue during the day."),
    ("Give me a tip for sleeping better.", "Keep a regular bedtime and avoid screens for an "
     "hour before sleep."),
    ("What is Python?", "Python is a programming language known for its readable syntax."),
    ("How do plants make food?", "Plants make sugar from water and carbon dioxide using "
     "sunlight, a process called photosynthesis."),
    ("Write a haiku about rain.", "Soft rain on the roof / the garden drinks in silence / "
     "puddles hold the sky"),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius "
     "at sea level."),
    ("法国的首都是哪里？", "法国的首都是巴黎。"),
    ("一年有几个月？", "一年有十二个月。"),
    ("请推荐一种健康的早餐。", "燕麦粥配水果和一杯牛奶是一份健康的早餐。"),
    ("水在多少度结冰？", "在标准大气压下，水在零摄氏度结冰。"),
    ("什么是机器学习？", "机器学习是让计算机从数据中学习规律并做出预测的方法。"),
    ("用一句话介绍长城。", "长城是中国古代修建的防御工程，绵延数千公里。"),
    ("三加五等于几？", "三加五等于八。"),
    ("怎样才能学好一门外语？", "每天坚持练习听说读写，并多和母语者交流。"),
]


def records() -> tuple[list[dict[str, Any]], str]:
    """The set as chat records, and its sha256 (the data fingerprint of a check)."""
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in PAIRS]
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()
    return rows, digest
