"""An AMBER evaluation run with a fake generator, for subprocess tests (fault injection, sharding, locking).

The real runner, answer store, lock, fingerprint and merge run; only the model is replaced, by a
deterministic generator (no torch is imported, so a run starts in a fraction of a second)::

    python tests/fake_eval.py OUT AMBER_ROOT IMAGE_DIR [--variants none,skip1] [--delay 0.01]
        [--kill-at EVENT] [--rank R --world W]

``--kill-at`` sends this process SIGKILL at an exact point:

* ``append:N``: right after the N-th answer of this run is written and fsync'ed (``append:0``: just
  after the folder is claimed, before any answer);
* ``torn:N``: in the middle of writing the N-th answer (half of its line is on disk);
* ``merge-tmp``: while the merge writes its temporary file (half of it written);
* ``merge-replace``: after the merge renamed its file over ``responses.jsonl``, before it deleted
  the rank files;
* ``report``: after the merge, before the report is written.

``--rank R --world W`` plays process R of a W-process run, one process at a time: rank 0 claims
the folder and merges, the other ranks only write their shard.

Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` set) the ranks are the real ones.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lvlm_skip.evaluation import generation, records, runner  # noqa: E402
from lvlm_skip.benchmarks.amber.task import AmberTask  # noqa: E402
from lvlm_skip.evaluation.processes import Processes, current_processes  # noqa: E402
from lvlm_skip.evaluation.variants import VariantPlan, VariantSpec  # noqa: E402


def fake_answer(image, prompt: str, label: str) -> generation.Generation:
    """Deterministic: depends on the variant, the prompt and the image's first pixel."""
    if prompt.lower().startswith(("is ", "are ", "does ")):
        text = "Yes" if (image.getpixel((0, 0))[0] // 40 + len(label)) % 2 else "No"
    else:
        text = f"A dog on the grass with a cat ({label}, pixel {image.getpixel((0, 0))[0]})."
    tokens = len(text.split())
    return generation.Generation(text=text, new_tokens=tokens, seconds=0.01 * tokens * (0.5 if label != "none" else 1.0),
                                 layers_skipped=0.0 if label == "none" else 1.5)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install_kill_point(kill_at: str | None) -> None:
    if not kill_at:
        return
    event, _, count = kill_at.partition(":")
    if event in ("append", "torn"):
        target = int(count)
        original = records.AnswerStore.append
        state = {"n": 0}
        if event == "append" and target == 0:
            original_generate = runner._generate

            def generate_then_die(*args, **kwargs):
                die()
                return original_generate(*args, **kwargs)

            runner._generate = generate_then_die
            return

        def append(self, record):
            state["n"] += 1
            if event == "torn" and state["n"] == target:
                line = record.to_line()
                with open(self.path, "ab") as handle:
                    handle.write(line[: len(line) // 2])
                    handle.flush()
                    os.fsync(handle.fileno())
                die()
            original(self, record)
            if event == "append" and state["n"] == target:
                die()

        records.AnswerStore.append = append
    elif event in ("merge-tmp", "merge-replace"):
        def rewrite(folder, recs, shards):
            target = folder / records.RESPONSES_FILE
            temporary = folder / (records.RESPONSES_FILE + ".tmp")
            lines = [r.to_line() for r in recs]
            with temporary.open("wb") as handle:
                for line in lines[: len(lines) // 2 if event == "merge-tmp" else len(lines)]:
                    handle.write(line)
                if event == "merge-tmp" and lines:
                    handle.write(lines[len(lines) // 2][:7])
                handle.flush()
                os.fsync(handle.fileno())
            if event == "merge-tmp":
                die()
            os.replace(temporary, target)
            die()

        records._rewrite = rewrite
    elif event == "report":
        runner._report = lambda *a, **k: die()
    else:
        raise SystemExit(f"unknown kill point {kill_at!r}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("amber_root")
    p.add_argument("image_dir")
    p.add_argument("--variants", default="none,skip1")
    p.add_argument("--task", default="a")
    p.add_argument("--delay", type=float, default=0.0, help="seconds per answer")
    p.add_argument("--kill-at", default=None)
    p.add_argument("--rank", type=int, default=None)
    p.add_argument("--world", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--log-level", default=None, help="log lvlm_skip's messages to stderr at this level")
    args = p.parse_args(argv)
    if args.log_level:
        import logging

        logging.basicConfig(format="%(message)s", stream=sys.stderr)
        logging.getLogger("lvlm_skip").setLevel(args.log_level)

    def load_generator(settings, plan, progress=False):
        def generate(image, prompt, label):
            if args.delay:
                time.sleep(args.delay)
            return fake_answer(image, prompt, label)

        return generate

    generation.load_generator = load_generator
    install_kill_point(args.kill_at)
    specs = tuple(VariantSpec(label, label.split(":")[0], "static") for label in args.variants.split(","))
    settings = runner.RunSettings(
        out=Path(args.out), plan=VariantPlan(specs=specs),
        generation=generation.GenerationSettings(model="tiny", device="cpu", dtype="float32", device_map=None,
                                                 max_new_tokens=args.max_new_tokens),
        image_dir=Path(args.image_dir), builtin_model=True,
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    processes = Processes(rank=args.rank, world=args.world) if args.rank is not None else current_processes()
    from lvlm_skip.errors import InputError

    try:
        runner.evaluate(AmberTask.load(args.amber_root, args.task, backend="offline"), settings, processes)
    except InputError as error:
        sys.stderr.write(f"fake_eval: error: {error}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
