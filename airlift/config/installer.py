"""The spec's `installer:` key: airlift itself travels in the bundle as `tools/airlift`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Installer(BaseModel):
    """`installer:` airlift itself travels in the bundle (`tools/airlift`), for the far side's Python and platform.

    Both default to the building host's: the one running the build (`airlift build --installer` with no
    `installer:` in the spec takes exactly these defaults).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    python: str | None = Field(default=None, pattern=r"^3\.\d+$", description="the far side's Python, e.g. 3.11")
    platform: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9_]*$", description="the far side's wheel platform tag, e.g. manylinux_2_28_x86_64")

    def target(self) -> tuple[str, str]:
        """(python, platform) with the defaults filled in from the running interpreter."""
        import sys

        from packaging.tags import sys_tags

        python = self.python or f"{sys.version_info.major}.{sys.version_info.minor}"
        # The newest manylinux tag this interpreter accepts (e.g. manylinux_2_36_x86_64), not the bare
        # linux_x86_64 (no index serves those): pip, given it as --platform, also takes the older
        # manylinux tags it implies.
        platforms = [tag.platform for tag in sys_tags() if tag.platform != "any"]
        platform = self.platform or next((p for p in platforms if p.startswith("manylinux")), platforms[0])
        return python, platform
