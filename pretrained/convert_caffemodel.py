"""Convert a Caffe .caffemodel (e.g. the published TextTopicNet weights) to a .safetensors state dict.

Reads the binary protobuf without Caffe (texttopicnet.weights.caffe_proto), maps every layer
with weights onto our CaffeNet (conv1..conv5, fc6, fc7, fc8; exact set and shapes
asserted, anything unexpected reported by name) and writes the state dict with the
source file's name, sha256 and the number of outputs in the header metadata. The
result loads with ``texttopicnet.weights.loading.load_network(path)`` or
``CaffeNet(n).load_state_dict(safetensors.torch.load_file(path))``.

Run::

    python pretrained/convert_caffemodel.py pretrained/TextTopicNet_Wikipedia_ImageCLEF_40Topics.caffemodel
    python pretrained/convert_caffemodel.py pretrained/TextTopicNet_finetuned_VOC2007.caffemodel  # 20-way fc8

Idempotent: an existing output whose header names the same source sha256 is kept
unless ``--force`` (several models share pretrained/, so the record of what was
converted lives in each file's header rather than in one meta.json).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from texttopicnet.core import cli  # noqa: E402
from texttopicnet.core.errors import UserError  # noqa: E402
from texttopicnet.weights import caffe_import  # noqa: E402

STAGE = "convert_caffemodel"


def build_parser():
    p = cli.make_parser(__doc__)
    p.add_argument("caffemodel", type=Path, help="the binary .caffemodel to convert")
    p.add_argument("--output", type=Path, default=None,
                   help="where to write the state dict (default: the input's name with .safetensors)")
    p.add_argument("--num-outputs", type=int, default=None,
                   help="expected fc8 outputs; default: read from the file (40 topics for the "
                        "TextTopicNet model, 20 VOC classes for the fine-tuned one, as published)")
    p.add_argument("--rename", action="append", default=[], metavar="CAFFE=OURS",
                   help="map a Caffe layer name onto one of ours (conv1..conv5, fc6, fc7, fc8), e.g. "
                        "fc8_voc=fc8 for a fine-tuned head that Caffe required to be renamed")
    p.add_argument("--force", action="store_true", help="convert again even if the output is up to date")
    return p


def parse_renames(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        theirs, sep, ours = item.partition("=")
        if not sep or not theirs or not ours:
            raise UserError(f"--rename {item!r}: expected CAFFE_NAME=OUR_NAME, e.g. fc8_voc=fc8")
        out[theirs] = ours
    return out


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.print_config(STAGE, args)
    caffe_import.convert_file(args.caffemodel, args.output, force=args.force, num_outputs=args.num_outputs,
                              renames=parse_renames(args.rename), log=cli.log)
    return 0


if __name__ == "__main__":
    cli.run_main(main)
