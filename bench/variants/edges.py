from bench.variants.core import Ctx


def edges(ctx: Ctx) -> None:
    ctx.describe("stub")
