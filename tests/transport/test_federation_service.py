"""``Federation.Pull`` against a real node: what a child may ask, and what it may not."""

from __future__ import annotations

import grpc
import pytest

from node.transport.wire import fpb, frpc

from .conftest import Running


def _pull(running: Running, who: str, request: fpb.PullRequest) -> fpb.PullResponse:
    with running.channel(who) as channel:
        response: fpb.PullResponse = frpc.FederationStub(channel).Pull(request, timeout=30)
        return response


def test_a_registered_child_pulls_an_empty_answer_from_a_quiet_parent(running: Running) -> None:
    answer = _pull(running, "child", fpb.PullRequest())
    assert list(answer.messages) == [] and answer.notice_cursor == 0


def test_ids_beyond_the_stores_range_are_invalid_arguments_not_internal_errors(running: Running) -> None:
    for request in (fpb.PullRequest(acked=[2**63]), fpb.PullRequest(notice_cursor=2**64 - 1)):
        with pytest.raises(grpc.RpcError) as info:
            _pull(running, "child", request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(info.value.trailing_metadata() or ())["credit-error-code"] == "E_USAGE"
        assert "Traceback" not in (info.value.details() or "")
    assert _pull(running, "child", fpb.PullRequest()).notice_cursor == 0  # still serving


def test_a_node_that_is_not_a_child_may_not_pull(running: Running) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _pull(running, "stranger", fpb.PullRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
