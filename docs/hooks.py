"""MkDocs hook: the committed reduced-scale figures (paper_tables/reduced/figures/*.png) join the
site as figures/reduced/<name>.png, so pages show the figures `make reduced-figures` draws
without a copy of them under docs/."""

from pathlib import Path

from mkdocs.structure.files import File

FIGURES = "paper_tables/reduced/figures"


def on_files(files, config):
    root = Path(config.config_file_path).parent
    for png in sorted((root / FIGURES).glob("*.png")):
        files.append(File.generated(config, f"figures/reduced/{png.name}",
                                    abs_src_path=str(png)))
    return files
