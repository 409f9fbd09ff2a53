"""Independent references for layer skipping: the model with layers deleted, and a cache-free replay."""

import copy

import torch

from lvlm_skip.anatomy import ModelAnatomy


def deleted_layers_model(model, skip):
    """An independent copy of ``model`` with the 1-based layers ``skip`` removed from the decoder."""
    clone = copy.deepcopy(model)
    decoder = clone.get_decoder()
    keep = [layer for j, layer in enumerate(decoder.layers, start=1) if j not in skip]
    for index, layer in enumerate(keep):
        attention = layer.self_attn if hasattr(layer, "self_attn") else layer.cross_attn  # Mllama: cross layers
        attention.layer_idx = index
    if getattr(decoder, "cross_attention_layers", None) is not None:  # Mllama: the kept cross-attention layers' indices
        kept = [j - 1 for j in range(1, len(decoder.layers) + 1) if j not in skip]
        decoder.cross_attention_layers = [kept.index(i) for i in decoder.cross_attention_layers if i in kept]
        decoder.config.cross_attention_layers = list(decoder.cross_attention_layers)
    decoder.layers = torch.nn.ModuleList(keep)
    clone.config.get_text_config().num_hidden_layers = len(keep)
    decoder.config.num_hidden_layers = len(keep)
    if getattr(decoder.config, "layer_types", None):
        # each kept layer keeps its own type (Gemma 3's sliding / full pattern)
        decoder.config.layer_types = [t for j, t in enumerate(decoder.config.layer_types, start=1) if j not in skip]
    return clone


@torch.no_grad()
def slow_reference_tokens(model, inputs, report, num_steps, *, static: bool, suppress: tuple[int, ...] = (),
                          prefix_lm: bool = False):
    """Greedy tokens from re-running the whole prefix without cache at every step, applying ``report``'s decisions.

    At layer ``j`` the output at a position equals the input wherever the report skipped ``j`` for
    that row at the step that position predicts (every position for a static set); where the report
    exits at layer ``e``, that step's logits come from ``lm_head(norm(h_e))``. ``suppress`` are token
    ids never chosen: EOS (``GREEDY`` sets ``min_new_tokens``) and the image token, which only the prompt may contain.
    ``prefix_lm`` (PaliGemma): mark the generated positions with ``token_type_ids = 1``, so the replay attends to
    them causally as generate does, and only the prompt bidirectionally.
    """
    anatomy = ModelAnatomy.from_model(model)
    prompt = inputs["input_ids"]
    batch, prompt_len = prompt.shape
    sequence = prompt
    mask = inputs.get("attention_mask", torch.ones_like(prompt))
    extra = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    tokens = []
    for t in range(num_steps):
        length = sequence.shape[1]
        # (L, batch, length): skip masks by position
        skip = torch.zeros(anatomy.num_layers, batch, length, dtype=torch.bool)
        for s in range(t + 1):
            step_skip = torch.from_numpy(report.skipped[s]).T  # (L, batch)
            skip[:, :, prompt_len - 1 + s] = step_skip
        if static:
            skip[:, :, : prompt_len - 1] = torch.from_numpy(report.skipped[0]).T[:, :, None]
        captured = {}

        def hook(module, args, output, j):
            hidden_in = args[0]
            tensor = output[0] if isinstance(output, tuple) else output  # Chameleon's layers return a tuple
            out = torch.where(skip[j - 1][:, :, None], hidden_in, tensor)
            captured[j] = out[:, -1]
            return (out, *output[1:]) if isinstance(output, tuple) else out

        handles = [
            layer.register_forward_hook(lambda m, a, o, j=j: hook(m, a, o, j)) for j, layer in enumerate(anatomy.layers, 1)
        ]
        try:
            if prefix_lm:
                extra["token_type_ids"] = (torch.arange(length) >= prompt_len).long().expand(batch, length)
            logits = model(input_ids=sequence, attention_mask=mask, use_cache=False, **grown_to(extra, length)).logits[:, -1]
        finally:
            for handle in handles:
                handle.remove()
        exit_layer = report.exit_layer[t]
        for b in range(batch):
            if exit_layer[b] < anatomy.num_layers:
                logits[b] = anatomy.unembed(anatomy.final_norm(captured[int(exit_layer[b])][b]))
        token, sequence, mask = greedy_append(model, logits, sequence, mask, suppress)
        tokens.append(token)
    return torch.stack(tokens, dim=1)


def grown_to(extra: dict, length: int) -> dict:
    """The prompt's per-position inputs other than the ids and mask, grown to ``length`` positions as generate
    grows them: Mllama's ``cross_attention_mask`` repeats its last position, the Qwen family's ``mm_token_type_ids``
    marks generated tokens as text (0)."""
    extra = dict(extra)
    cross = extra.get("cross_attention_mask")  # (batch, positions, images, tiles)
    if cross is not None and cross.shape[1] < length:
        extra["cross_attention_mask"] = torch.cat([cross, cross[:, -1:].expand(-1, length - cross.shape[1], *cross.shape[2:])], 1)
    types = extra.get("mm_token_type_ids")  # (batch, positions)
    if types is not None and types.shape[1] < length:
        extra["mm_token_type_ids"] = torch.cat([types, types.new_zeros(types.shape[0], length - types.shape[1])], 1)
    return extra


def greedy_append(model, logits, sequence, mask, suppress=()):
    """The greedy token of `(batch, vocab)` ``logits`` (EOS and ``suppress`` never chosen), appended.

    Returns:
        ``(token, sequence, mask)``: `(batch,)` the token, and the prefix and its mask one longer.
    """
    logits = logits.clone()
    logits[:, [model.generation_config.eos_token_id, *suppress]] = -float("inf")
    token = logits.argmax(-1)
    sequence = torch.cat([sequence, token[:, None]], dim=1)
    mask = torch.cat([mask, torch.ones_like(token[:, None])], dim=1)
    return token, sequence, mask
