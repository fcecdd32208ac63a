"""selfcodec.codec.plans (torch-free, for the command line and `info`) is where codec/modes.py takes its plans from; api agrees with it."""

import pytest

from selfcodec import api

from selfcodec.codec import plans
from selfcodec.codec import modes as M
from selfcodec.errors import CodecError


def test_plans_agree_with_the_codec():
    assert plans.MODE_CODES == M.MODE_CODES and plans.MODE_NAMES == M.MODE_NAMES
    assert plans.MODES == api.MODES and plans.LEVELS == api.LEVELS and plans.DEFAULT_LEVEL == api.DEFAULT_LEVEL
    for levels in range(4):
        for mode in plans.MODE_CODES:
            try:
                want = M.stream_names(M.plan_for(mode, levels), levels)
            except CodecError:
                with pytest.raises(CodecError):
                    plans.plan_for(mode, levels)
                continue
            assert plans.stream_names(plans.plan_for(mode, levels), levels) == want, (mode, levels)
