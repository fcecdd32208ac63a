"""A model file whose configuration asks for absurd sizes is refused from its configuration,
before any network is built; one whose weights do not fit its configuration before the real
network is built. The forged files are tiny models' files with their safetensors header rewritten."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from unittest import mock

import pytest

from selfcodec.model import checkpoint, modelfile

from selfcodec import zoo
from selfcodec.errors import CodecError


def forge(src: str, dst: Path, **config) -> Path:
    """A copy of the model file src whose stored configuration has `config`'s fields replaced."""
    data = Path(src).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["__metadata__"]["config"] = json.dumps({**json.loads(header["__metadata__"]["config"]), **config})
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    dst.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    return dst


ABSURD = [dict(mid_ch=30000), dict(flow_blocks=1e7), dict(flow_blocks=10_000_000), dict(mixtures=100_000),
          dict(u_ch=1 << 20), dict(z_ch=1 << 20), dict(ch=-1), dict(scales=9), dict(mixtures=True),
          dict(network="huge"), dict(rd_lambdas=list(range(1000)))]


@pytest.mark.parametrize("config", ABSURD, ids=lambda c: ",".join(f"{k}={v!r}"[:24] for k, v in c.items()))
def test_absurd_sizes_refused_before_any_network_is_built(tiny_fast_hyper, tmp_path, config):
    path = forge(tiny_fast_hyper, tmp_path / "forged.safetensors", **config)
    with mock.patch.object(checkpoint, "build_model", side_effect=AssertionError("a network was built")):
        with pytest.raises(CodecError, match=next(iter(config))):
            zoo.load(str(path))
        with pytest.raises(CodecError, match=next(iter(config))):
            checkpoint.read_config(path)


def test_sizes_the_weights_do_not_have_refused_before_the_real_network(tiny_fast_hyper, tmp_path):
    path = forge(tiny_fast_hyper, tmp_path / "wider.safetensors", mid_ch=1000)  # in range, but not these weights
    built = []
    real = checkpoint.build_model

    def build(cfg):
        import torch

        built.append(torch.get_default_device().type)
        return real(cfg)

    with mock.patch.object(checkpoint, "build_model", build):
        with pytest.raises(CodecError, match="do not fit its configuration"):
            checkpoint.load_model(path)
    assert built == ["meta"]  # only the shapes were looked at


def test_shipped_and_test_models_pass(tiny_model, tiny_fast_hyper):
    for path in [zoo.model_path(name) for name in zoo.available()] + [tiny_model, tiny_fast_hyper]:
        modelfile.config(path)
    assert checkpoint.load_model(Path(tiny_fast_hyper)).cfg.u_hyper == 4


def test_not_a_model_file(tmp_path):
    for content in (b"", b"\xff" * 8 + b"{}", struct.pack("<Q", 2) + b"[]", struct.pack("<Q", 2) + b"{}"):
        (tmp_path / "x.safetensors").write_bytes(content)
        with pytest.raises(CodecError):
            checkpoint.read_config(tmp_path / "x.safetensors")


def test_cli_refuses_a_forged_model_with_one_line(tiny_fast_hyper, tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    import selfcodec.cli.main as cli_main

    Image.new("RGB", (16, 16)).save(tmp_path / "x.png")
    path = forge(tiny_fast_hyper, tmp_path / "forged.safetensors", mid_ch=30000)
    res = CliRunner().invoke(cli_main.main, ["encode", str(tmp_path / "x.png"), "--model", str(path),
                                               "-o", str(tmp_path / "x.svae")])
    assert res.exit_code == 1 and "mid_ch=30000" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.svae").exists()


def test_every_shipped_model_file_fits_its_configuration():
    """zoo.load skips this check for the shipped files (it costs seconds at start-up): here it runs."""
    from selfcodec import zoo

    for name in zoo.available():
        path = zoo.model_path(name)
        checkpoint._check_weights_fit(checkpoint.read_config(path), path, "")
