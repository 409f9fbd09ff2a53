"""``lvlm-skip speed``: its configurations and targets, the benchmark model's curves, and one short run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lvlm_skip.cli import main
from lvlm_skip.speed import benchmark as speed


def test_layer_plan_and_configurations():
    plan = speed.layer_plan("bench-llava", 32)
    assert (plan.critical, plan.mutations) == (18, (27, 30))
    scaled = speed.layer_plan("some/folder", 40)
    assert scaled.critical == 22 and scaled.mutations == (34, 35, 36, 38)
    configs = {c.name: c for c in speed.default_configs(plan, 32, 256)}
    assert list(configs)[0] == "stock" and configs["stock"].wrap is None
    assert configs["skip1 static"].wrap == dict(variant="skip1", critical_layer=18, mutation_layers=(27, 30))
    assert configs["skip3 online"].target.label == "online >= 4 layers, >= 90% of ideal"
    assert configs["online detect-only (k=256)"].wrap["detection"].patience > 10**6 - 1
    names = [c.name for c in speed.select_configs(speed.default_configs(plan, 32, 256), "none,skip2")]
    assert names == ["stock", "none", "skip2 static", "skip2 online"]


def test_targets_are_judged_from_the_row():
    assert speed.STATIC.met({"pct_of_ideal": 95.0}) == "yes"
    assert speed.STATIC.met({"pct_of_ideal": 94.9}) == "no"
    assert speed.DETECT.met({"overhead_pct": 5.0}) == "yes" and speed.DETECT.met({"overhead_pct": 5.1}) == "no"
    assert speed.QUIET_STEPS.met({"quiet_overhead_pct": None}) == "-"
    row = {"layers_skipped": 4.2, "pct_of_ideal": 91.0}
    assert speed.ONLINE_SPAN.met(row) == "yes"
    assert speed.ONLINE_SPAN.met(dict(row, layers_skipped=3.9)) == "no"
    assert speed.ONLINE_SPAN.met({"layers_skipped": 0.0, "pct_of_ideal": None}) == "no"  # skipped nothing


def test_step_time_takes_each_steps_least_duration_over_the_runs():
    runs = [[0.05, 0.09, 0.04], [0.07, 0.03, 0.04], [0.05, 0.03, 0.20]]
    assert speed.step_time(runs) == pytest.approx((0.05 + 0.03 + 0.04) / 3)
    assert speed.step_time(runs, indices=[2]) == pytest.approx(0.04)
    assert speed.step_time(runs, "median") == pytest.approx(0.05)
    with pytest.raises(ValueError, match="statistic"):
        speed.step_time(runs, "p10")


def test_a_row_that_commits_several_tokens_at_once_is_timed_per_token():
    """A verify pass's accepted drafts are stamped with it, so most of a speculative row's steps can be 0: its median
    step is the median of the runs' mean steps, and its spread is over those means (no division by a zero median)."""
    runs = [[0.3, 0.0, 0.0, 0.3], [0.3, 0.0, 0.0, 0.4], [0.33, 0.0, 0.0, 0.3]]
    assert speed.commits_several_tokens(runs) and not speed.commits_several_tokens([[0.1, 0.2]])
    assert speed.step_time(runs, "median") == pytest.approx(0.63 / 4)  # the runs' means: 0.15, 0.175, 0.1575
    assert speed.step_time(runs) == pytest.approx(0.6 / 4)
    config = speed.SpeedConfig("speculative", dict(variant="speculative"))
    row = speed._row(config, {"prefill": [1.0] * 3, "run_steps": runs, "skipped": [0.0] * 3, "tokens": ()},
                     stock_runs=[[0.2] * 4] * 3, num_layers=8)
    assert row.speedup == pytest.approx(0.2 / 0.15, abs=1e-3) and row.spread_pct == pytest.approx(100 * 0.025 / 0.1575, abs=0.1)


def test_rows_from_samples():
    sample = {"prefill": [1.0, 1.2], "run_steps": [[0.05, 0.06, 0.05], [0.06, 0.05, 0.07], [0.07, 0.05, 0.06]],
              "skipped": [8.0, 8.0], "acted": []}
    stock = [[0.0625, 0.07, 0.0625], [0.08, 0.0625, 0.0625]]
    row = speed._row(speed.SpeedConfig("x", dict(variant="layers", layers=[1]), speed.STATIC), sample,
                     stock_runs=stock, num_layers=32)
    assert row.step_ms == 50.0 and row.speedup == 1.25 and row.ideal == pytest.approx(1.333, abs=1e-3)
    assert row.pct_of_ideal == pytest.approx(93.8, abs=0.1) and row.met == "no"
    assert row.step_ms_median == 60.0  # every duration pooled: four 0.05, three 0.06, two 0.07
    assert row.spread_pct == pytest.approx(100 * (0.06 - 0.05) / 0.06, abs=0.1) and row.overhead_pct == -20.0
    assert speed.noisy_rows([row]) == ["x"]


def test_quiet_steps_are_those_quiet_in_every_run_against_stocks_same_steps():
    sample = {"prefill": [1.0, 1.0], "run_steps": [[0.11, 0.05, 0.10], [0.10, 0.06, 0.12]], "skipped": [1.0, 1.0],
              "acted": [[False, True, False], [False, True, True]]}
    stock = [[0.10, 0.10, 0.08], [0.12, 0.10, 0.08]]
    row = speed._row(speed.SpeedConfig("exit online", dict(variant="exit", mode="online"), speed.QUIET_STEPS), sample,
                     stock_runs=stock, num_layers=32)
    assert row.quiet_steps == 1 and row.quiet_overhead_pct == 0.0 and row.met == "yes"  # step 0 only: 0.10 vs 0.10


@pytest.mark.slow
def test_the_benchmark_models_curves_show_the_planted_layers():
    """bench-llava: the default detector finds critical layer 18 and the loud layers, and no mutation at L."""
    from lvlm_skip.anatomy import ModelAnatomy
    from lvlm_skip.detection import detect_layers
    from lvlm_skip.divergence import adjacent_js_divergence
    from lvlm_skip.hooks import record_last_position_states
    from lvlm_skip.inputs.models import chat_prompt, encode_inputs
    from lvlm_skip.readout import stack_layer_logprobs
    from lvlm_skip.inputs.builtin_models import BENCH_CRITICAL_LAYER, BENCH_LOUD_LAYERS, build_bench_llava

    model, processor = build_bench_llava()
    inputs = encode_inputs(processor, [chat_prompt(processor, "Please describe this image in detail.")],
                           [speed.random_image()], model)
    anatomy = ModelAnatomy.from_model(model)
    with record_last_position_states(anatomy) as recorder, torch.no_grad():
        model.generate(**inputs, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    with torch.no_grad():
        curves = torch.stack([adjacent_js_divergence(stack_layer_logprobs(anatomy, s))[:, 0] for s in recorder.calls])
    found = detect_layers(curves)
    assert (found.critical == BENCH_CRITICAL_LAYER).all(), found.critical
    flagged = found.mutation.numpy()
    assert flagged.any(axis=0)[np.asarray(BENCH_LOUD_LAYERS[:1]) - 1].all()  # the first loud layer fires
    assert not flagged[:, [j for j in range(32) if j + 1 not in BENCH_LOUD_LAYERS]].any()  # nowhere else, not at L
    assert 0 < flagged[:, BENCH_LOUD_LAYERS[0] - 1].mean() <= 1.0
    assert float(curves[:, : BENCH_CRITICAL_LAYER - 1].min()) > 10 * float(curves[:, BENCH_CRITICAL_LAYER - 1 : 26].max())


def test_bad_arguments_exit_2(tmp_path, capsys):
    for argv, message in [(["--new-tokens", "1"], "--new-tokens must be at least 2"),
                          (["--profile", str(tmp_path / "none.json")], "does not exist"),
                          (["--text-only", "--batch-size", "1,2"], "--text-only measures batch 1")]:
        with pytest.raises(SystemExit) as info:
            main(["speed", "--model", "tiny", "--out", str(tmp_path), *argv])
        assert info.value.code == 2
        assert message in capsys.readouterr().err


@pytest.mark.slow
def test_speed_run_writes_its_table(tmp_path, capsys):
    argv = ["speed", "--model", "tiny", "--runs", "1", "--new-tokens", "3", "--only", "none,exit", "--out", str(tmp_path),
            "--no-progress"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "speed.json").read_text())
    assert [r["config"] for r in result["rows"]] == ["stock", "none", "exit static", "exit online"]
    assert result["num_layers"] == 16 and result["rows"][0]["speedup"] == 1.0
    assert result["rows"][1]["target"] == "overhead <= 3%" and "spread_pct" in result["rows"][1]
    assert result["rows"][3]["quiet_steps"] is not None
    assert set(result["lagged_agreement"]) >= {"steps", "exact", "within_one_layer"}
    assert result["approximation"]["candidates"] == 256
    assert "| config" in capsys.readouterr().out and (tmp_path / "speed.md").is_file()


def test_the_full_size_benchmark_model_is_llava_1_5_7b_shaped():
    """bench-llava-7b (for a GPU) is llava-1.5-7b-hf's configuration: built here on the meta device only."""
    from lvlm_skip.inputs.builtin_models import build_bench_llava

    model, _ = build_bench_llava(shape="7b", device="meta", dtype=torch.float16)
    assert sum(p.numel() for p in model.parameters()) == 7_063_427_072  # llava-hf/llava-1.5-7b-hf's count
    text, vision = model.config.text_config, model.config.vision_config
    assert (text.num_hidden_layers, text.hidden_size, text.intermediate_size, text.vocab_size) == (32, 4096, 11008, 32064)
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (1024, 24, 336, 14)
    assert speed.layer_plan("bench-llava-7b", 32).source == "bench-llava's layer plan"
    with pytest.raises(ValueError, match="shape"):
        build_bench_llava(shape="13b", device="meta")


def test_speed_at_several_batch_sizes_gives_rows_per_batch_and_token_agreement(tmp_path):
    argv = ["speed", "--model", "tiny", "--runs", "1", "--new-tokens", "3", "--only", "skip3", "--batch-size", "1,3",
            "--skip-approximation", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "speed.json").read_text())
    rows = result["rows"]
    assert [(r["config"].split(" ")[0], r["batch"]) for r in rows][:1] == [("stock", 1)]
    assert {r["batch"] for r in rows} == {1, 3} and result["setting"]["batch_sizes"] == [1, 3]
    batched = [r for r in rows if r["batch"] == 3]
    assert batched[0]["config"] == "stock" and batched[0]["speedup"] == 1.0  # against stock at the same batch
    # float32 on the CPU: every row of the batch makes the tokens it makes alone
    assert all(r["same_tokens"] == 1.0 for r in batched)
    assert all(r["same_tokens"] is None for r in rows if r["batch"] == 1)


def test_same_tokens_share_and_batch_size_option():
    import argparse

    from lvlm_skip.cli.speed import batch_sizes

    assert speed.same_tokens_share([(1, 2), (3, 4), (5, 6)], [(1, 2), (3, 5), (5, 6)]) == pytest.approx(2 / 3)
    assert batch_sizes("1,4,8,4") == [1, 4, 8]
    with pytest.raises(argparse.ArgumentTypeError):
        batch_sizes("0")


def test_speculative_rows_and_targets():
    plan = speed.layer_plan("bench-llava", 32)
    configs = {c.name: c for c in speed.default_configs(plan, 32, 256)}
    assert configs["speculative skip1"].wrap == dict(variant="speculative", draft="skip1", k=4, critical_layer=18,
                                                     mutation_layers=(27, 30))
    assert configs["speculative exit"].wrap["exit_layer"] == 18
    assert configs["prompt lookup 10"].generate == {"prompt_lookup_num_tokens": 10}
    names = [c.name for c in speed.select_configs(speed.default_configs(plan, 32, 256), "speculative,prompt")]
    assert names == ["stock", "speculative skip1", "speculative skip3", "speculative exit",
                     "speculative skip3 heuristic k", "speculative exit heuristic k", "speculative skip3 expected k",
                     "speculative exit expected k", "speculative skip3 expected k + lookup",
                     "speculative exit expected k + lookup", "prompt lookup 10"]
    assert configs["speculative exit expected k + lookup"].wrap == dict(
        variant="speculative", draft="exit", k=4, schedule="expected", lookup=10, exit_layer=18)
    assert configs["speculative exit heuristic k"].wrap["schedule"] == "heuristic"
    assert configs["speculative skip3 expected k"].wrap["schedule"] == "expected"
    assert speed.SPECULATIVE.met({"pct_of_ideal": 91.0, "same_tokens_as_stock": True}) == "yes"
    assert speed.SPECULATIVE.met({"pct_of_ideal": 99.0, "same_tokens_as_stock": False}) == "no"
    failed = speed._row(configs["speculative exit"], {"error": "ValueError: no"}, stock_runs=[[0.1]], num_layers=32)
    assert failed.error == "ValueError: no" and failed.met == "-" and np.isnan(failed.speedup)


def test_speculative_rows_measured_side_by_side():
    """measure() on a tiny Llama: speculative rows report acceptance, draft cost, the predicted speedup as their
    ideal and the stock tokens; a configuration whose generate fails is a row with its error, not a crash."""
    from tiny_models import make_llama

    model = make_llama(8, initializer_range=0.3)
    inputs = {"input_ids": torch.tensor([[1, 5, 6, 7, 8]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    configs = [speed.SpeedConfig("stock", None),
               speed.SpeedConfig("speculative layers", dict(variant="speculative", draft="layers", layers=[7, 8]),
                                 speed.SPECULATIVE),
               speed.SpeedConfig("broken", None, generate=dict(num_beams=0))]
    rows = {r.config: r for r in speed.measure(model, inputs, configs, runs=1, new_tokens=6)}
    row = rows["speculative layers"]
    assert row.same_tokens_as_stock is True and row.draft_layer_share == 0.75
    assert row.draft_cost > 0 and row.verify_cost > 0  # measured from the forwards, matched to the rounds
    assert 0.0 <= row.acceptance_rate <= 1.0 and row.ideal is not None and row.pct_of_ideal is not None
    assert row.ideal_memory_bound is not None and row.pct_of_memory_bound is not None
    assert rows["broken"].error and np.isnan(rows["broken"].step_ms)


def test_speculative_costs_match_forwards_to_rounds():
    """The forwards of a speculative generate are the prefill, then per round its drafts and one verify: the costs are
    each kind's time over a stock step, per forward the least over the runs; forwards that do not match the rounds
    give no costs."""
    stock = [[9.0, 2.0, 2.0, 2.0], [9.0, 2.2, 1.8, 2.0]]  # prefill, then steps: least per step 2.0, 1.8, 2.0
    rounds = [2, 1]  # prefill, draft, draft, verify, draft, verify
    runs = [[9.0, 1.0, 1.2, 3.0, 1.1, 2.6], [8.0, 1.1, 1.0, 2.8, 1.1, 3.0]]
    costs = speed.speculative_costs(runs, stock, rounds)
    step = (2.0 + 1.8 + 2.0) / 3
    assert costs["draft_cost"] == pytest.approx((1.0 + 1.0 + 1.1) / 3 / step)
    assert costs["verify_cost"] == pytest.approx((2.8 + 2.6) / 2 / step)
    median = speed.speculative_costs(runs, stock, rounds, "median")
    assert median["verify_cost"] == pytest.approx(2.9 / 2.0)  # median of 3.0, 2.6, 2.8, 3.0 over 2.0
    assert speed.speculative_costs([runs[0][:-1]], stock, rounds) is None  # a forward missing
    assert speed.speculative_costs(runs, stock, [3]) is None  # other rounds
    assert speed.speculative_costs([[9.0, 3.0]], stock, [0])["verify_cost"] == pytest.approx(3.0 / step)


def test_predicted_speedup_from_costs():
    """(new tokens - 1) stock steps against drafts at their cost plus verifies at theirs; the memory-bound prediction
    is the layer share with a verify of one step."""
    from lvlm_skip.speculative import SpeculativeConfig, SpeculativeReport
    from lvlm_skip.config import SpeculativeOptions

    config = SpeculativeConfig(draft_layers=(5, 6), options=SpeculativeOptions(draft="layers", k=4))
    report = SpeculativeReport(config, num_layers=8, drafted=[4, 4, 2], accepted=[4, 1, 2], new_tokens=11)
    assert report.predicted_speedup_at(0.5, 1.25) == pytest.approx(10 / (10 * 0.5 + 3 * 1.25))
    assert report.predicted_speedup == pytest.approx(10 / (10 * 0.75 + 3))


def test_prompt_lookup_suppresses_image_placeholders():
    """Prompt lookup copies prompt n-grams, image placeholders included, which LLaVA's forward refuses: its row forbids
    them (transformers drops forbidden candidates), and on a LLaVA with an image it then runs and gives stock's
    tokens."""
    import numpy as np
    from PIL import Image

    from lvlm_skip.anatomy import placeholder_token_ids
    from lvlm_skip.inputs.models import chat_prompt
    from tiny_models import make_llava

    model, processor = make_llava(6, hidden=64, intermediate=128, seed=3)
    placeholders = placeholder_token_ids(model)
    assert placeholders == {model.config.image_token_id}
    plan = speed.layer_plan("other", 6)
    configs = {c.name: c for c in speed.speculative_configs(plan, 6, placeholder_tokens=placeholders)}
    lookup = configs["prompt lookup 10"]
    assert lookup.generate == {"prompt_lookup_num_tokens": 10, "suppress_tokens": sorted(placeholders)}
    image = Image.fromarray((np.random.RandomState(0).rand(40, 40, 3) * 255).astype("uint8"))
    inputs = dict(processor(images=image, text=chat_prompt(processor, "describe this image ."), return_tensors="pt"))
    bare = speed.SpeedConfig("prompt lookup bare", None, generate=dict(prompt_lookup_num_tokens=10))
    rows = {r.config: r for r in speed.measure(model, inputs, [speed.SpeedConfig("stock", None), lookup, bare],
                                               runs=1, new_tokens=12)}
    assert rows["prompt lookup 10"].error is None and rows["prompt lookup 10"].same_tokens_as_stock is True
    assert "Image features and image tokens do not match" in rows["prompt lookup bare"].error


def test_text_only_runs_the_language_model_alone_with_both_built_ins(tmp_path):
    """--text-only: the VLM's decoder and head as a causal LM on the prompt's text, where transformers' early-exit
    assistant runs (on the VLM it cannot: its config has no num_hidden_layers) beside the speculative drafts."""
    argv = ["speed", "--model", "tiny", "--text-only", "--runs", "1", "--new-tokens", "4", "--skip-approximation",
            "--only", "speculative exit,prompt,assistant", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "speed.json").read_text())
    assert result["setting"]["model_class"] == "LlamaForCausalLM" and result["setting"]["text_only"] is True
    rows = {r["config"]: r for r in result["rows"]}
    assert set(rows) == {"stock", "speculative exit", "prompt lookup 10", "assistant early exit 9"}
    assert all(r["error"] is None and r["same_tokens_as_stock"] for r in rows.values())
    assert rows["speculative exit"]["verify_cost"] > 0
