"""The session server answers over a real channel."""

from memoryd.v1 import conversation_pb2 as pb


def test_create_and_get(grpc_stub, uid):
    created = grpc_stub.CreateConversation(
        pb.CreateConversationRequest(conversation=pb.Conversation(user_id=uid))
    ).conversation
    got = grpc_stub.GetConversation(pb.GetConversationRequest(conversation_id=created.id))
    assert got.conversation == created
