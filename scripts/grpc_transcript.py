"""A grpcurl-style transcript of a running server's gRPC API, through reflection only (no
.proto files): list, describe, then one streaming Generate call printed as JSON lines.

usage: grpc_transcript.py HOST:PORT
"""

import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

addr = sys.argv[1]
channel = grpc.insecure_channel(addr)
reflection = reflection_pb2_grpc.ServerReflectionStub(channel)


def ask(**request):
    return next(reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)])))


print(f"$ grpcurl -plaintext {addr} list")
for service in ask(list_services="").list_services_response.service:
    print(service.name)

print(f"\n$ grpcurl -plaintext {addr} describe t3d.v1.Generation")
pool = descriptor_pool.DescriptorPool()
files = ask(file_containing_symbol="t3d.v1.Generation").file_descriptor_response.file_descriptor_proto
for raw in files:
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
service = pool.FindServiceByName("t3d.v1.Generation")
print("t3d.v1.Generation is a service:")
for m in service.methods:
    stream = "stream " if m.server_streaming else ""
    print(f"  rpc {m.name} ( .{m.input_type.full_name} ) returns ( {stream}.{m.output_type.full_name} );")

request_json = '{"text": "12+7+3", "max_tokens": 16, "temperature": 0, "steps_per_block": 1}'
print(f"\n$ grpcurl -plaintext -d '{request_json}' {addr} t3d.v1.Generation/Generate")
method = service.methods_by_name["Generate"]
request_class = message_factory.GetMessageClass(method.input_type)
response_class = message_factory.GetMessageClass(method.output_type)
request = json_format.Parse(request_json, request_class())
call = channel.unary_stream(
    "/t3d.v1.Generation/Generate",
    request_serializer=request_class.SerializeToString,
    response_deserializer=response_class.FromString,
)
for message in call(request, timeout=30):
    print(json_format.MessageToJson(message, indent=None))
