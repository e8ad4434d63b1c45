"""Understanding members' sentences (issue 12): rules over normalised text.

`bot.understand.engine.Understander` turns a sentence into the `bot.router.Match`
of the keyword it means; docs/understanding.md explains the approach and the corpus.
"""
