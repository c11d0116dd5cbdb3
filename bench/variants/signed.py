from bench.variants.core import Ctx


def signed_channels(ctx: Ctx) -> None:
    ctx.describe("stub")
