"""One list of stages: the config's, with an entry in the data table for each and a training
class for each trainable one; the CLI's help names them."""

from __future__ import annotations

from raytune_llm.cli.main import COMMANDS
from raytune_llm.config import STAGES
from raytune_llm.config.finetuning import TRAINABLE_STAGES, FinetuningArgs
from raytune_llm.data.stages import STAGE_DATA
from raytune_llm.train.stages import STAGES as TRAIN_STAGES


def test_config_data_and_train_agree_on_the_stages():
    assert set(STAGE_DATA) == set(STAGES)
    assert set(TRAIN_STAGES) == set(TRAINABLE_STAGES) <= set(STAGES)
    assert FinetuningArgs.model_fields["stage"].annotation.__args__ == STAGES
    for stage in STAGES:
        assert stage in COMMANDS["train"].help


def test_the_data_table_matches_what_each_training_stage_collates():
    assert {s for s, e in STAGE_DATA.items() if e.record == "ranking"} == {"rm", "dpo", "orpo"}
    assert [s for s, e in STAGE_DATA.items() if e.packs] == ["pt", "sft"]
    for stage, entry in STAGE_DATA.items():
        assert (entry.encode_window is None) != (entry.encode_one is None), stage
