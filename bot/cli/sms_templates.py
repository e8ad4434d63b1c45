"""`memberbot sms-templates --provider aliyun [--locale zh_CN|en] [--json]`, and the
Aliyun part of `memberbot lint`.

Prints, for each message kind and reply, the template to submit for approval in
Aliyun's `${var}` syntax (derived from our own templates: `scheduler.sms_shapes`),
its template type, the configuration key its code goes under
(`[sms.aliyun.templates]`), and its variables with sample values
(`scheduler.sms_review`). The operator submits them once and pastes the codes into
the configuration; docs/aliyun-sms.md walks through it.
"""

from __future__ import annotations

import argparse
import json

from bot.cli.common import runner
from models.settings import Settings
from scheduler.sms_review import missing_english, review, template_sheet


def add_sms_templates_command(subparsers, parent_parser: argparse.ArgumentParser) -> None:
    cmd = subparsers.add_parser(
        "sms-templates",
        parents=[parent_parser],
        help="the SMS templates to submit to a domestic provider for approval",
    )
    cmd.add_argument("--provider", required=True, choices=["aliyun"])
    cmd.add_argument("--locale", default="zh_CN", choices=["zh_CN", "en"])
    cmd.add_argument("--json", action="store_true", help="one JSON object per template")
    cmd.set_defaults(func=cmd_sms_templates, run=runner(cmd_sms_templates))


async def cmd_sms_templates(settings: Settings, args: argparse.Namespace) -> int:
    codes = settings.sms.aliyun.templates
    for entry in template_sheet(args.locale):
        s = entry.shape
        if args.json:
            print(json.dumps({
                "key": s.key, "type": entry.kind, "template": s.text(),
                "variables": [{"name": v, "sample": entry.samples.get(v, "…")}
                              for v in s.variables],
                "code": codes.get(s.key),
            }, ensure_ascii=False))  # fmt: skip
            continue
        print(f"## {s.key} — {entry.kind}; code: {codes.get(s.key) or '(not set)'}")
        print(s.text())
        for v in s.variables:
            print(f"  ${{{v}}}  e.g. {entry.samples.get(v, '…')!r}")
        print()
    return 0


def lint_aliyun(settings: Settings) -> int:
    """Print the Aliyun findings (`scheduler.sms_review.review`); the count of errors."""
    found = review(settings.sms.aliyun)
    for f in found:
        print(f"sms.aliyun.templates.{f.key}: {f.rule}: {f.detail}")
    english = missing_english(settings.sms.aliyun)
    if english:
        print(f"note: {len(english)} English templates have no code (e.g. {english[0]}): "
              "members whose language is English get no SMS of those")  # fmt: skip
    return len(found)
