"""``raytune-llm data CONFIG``: preview what the data pipeline feeds the model."""

from __future__ import annotations

import argparse
import functools
import logging
import sys

from .info import load


def _quiet_ray_data() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    # A failing task is reported once, as the exception this command prints, not also as a log.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def data(args: argparse.Namespace) -> int:
    from ..data.errors import surface_data_errors
    from ..data.pipeline import check_data, packing_on, prepare_data
    from ..data.preview import dataset_stats, render_example
    from ..model.loader import load_tokenizer
    from ..utils.cluster import connect

    cfg = load(args)
    # The preview never writes a tokenized_path cache; examples are shown before packing.
    plain = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"packing": False, "neat_packing": False,
                                                     "tokenized_path": None})}
    )  # fmt: skip
    nocache = cfg.model_copy(update={"data": cfg.data.model_copy(update={"tokenized_path": None})})
    check_data(cfg)  # names, registry, template: before Ray starts
    where = connect(cfg.ray.ray_address, cfg.ray.ray_init_kwargs)
    _quiet_ray_data()
    factory = functools.partial(load_tokenizer, cfg.model)
    with surface_data_errors():
        prepared = prepare_data(plain, factory)
        ds = prepared.eval if args.split == "eval" else prepared.train
        if ds is None:
            print(f"the config has no {args.split} data", file=sys.stderr)
            return 2
        tokenizer = factory()
        color = sys.stdout.isatty()
        print(f"# {args.split} data of {args.config}, prepared on {where}")
        for i, row in enumerate(ds.take(args.num_examples), 1):
            if "input_ids" not in row:  # pairwise rows: show the chosen answer
                row = {"input_ids": row["chosen_input_ids"], "labels": row["chosen_labels"]}
            print(f"\n--- example {i} ({len(row['input_ids'])} tokens; trained-on text "
                  f"{'in green' if color else 'between ⟦ ⟧'}) ---")  # fmt: skip
            print(render_example(row, tokenizer, color=color))
        packed = None
        if packing_on(cfg):
            packed = getattr(prepare_data(nocache, factory), args.split)
        stats = dataset_stats(ds, cfg.data.cutoff_len, packed)
        print(f"\n--- {args.split} counts ---")
        print("\n".join(stats.lines()))
        if prepared.bad_records is not None:
            from ..data.readers import collect_bad_records

            print(collect_bad_records(prepared.bad_records).summary())
    return 0
