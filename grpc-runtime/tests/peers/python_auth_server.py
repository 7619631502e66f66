"""Python grpcio (C core) as a TLS server for our client's mutual TLS and call credentials.

Usage: python_auth_server.py CA_PEM SERVER_CERT SERVER_KEY TOKEN
Serves grpc.health.v1.Health on 127.0.0.1 (an ephemeral port, printed as "PORT <n>"),
requiring a client certificate signed by CA_PEM; an interceptor refuses every call whose
`authorization` metadata is not "Bearer TOKEN" (UNAUTHENTICATED) and reports the client
certificate's common name in the `x-peer-cn` response header. Runs until stdin closes.
"""
import sys
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2_grpc

ca_path, cert_path, key_path, token = sys.argv[1:5]


class RequireToken(grpc.ServerInterceptor):
    def intercept_service(self, continuation, details):
        md = dict(details.invocation_metadata)
        handler = continuation(details)
        if md.get("authorization") == f"Bearer {token}":
            return handler

        def deny(request, context):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"bad token {md.get('authorization')!r}")

        return grpc.unary_unary_rpc_method_handler(deny)


class PeerCn(grpc.ServerInterceptor):
    """Wraps unary handlers to send the client certificate's CN as initial metadata."""

    def intercept_service(self, continuation, details):
        handler = continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary

        def wrapped(request, context):
            cn = context.auth_context().get("x509_common_name", [b"?"])[0].decode()
            context.send_initial_metadata((("x-peer-cn", cn),))
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            wrapped, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )


def read(p):
    with open(p, "rb") as f:
        return f.read()


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[RequireToken(), PeerCn()])
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
creds = grpc.ssl_server_credentials([(read(key_path), read(cert_path))], root_certificates=read(ca_path), require_client_auth=True)
port = server.add_secure_port("127.0.0.1:0", creds)
server.start()
print(f"PORT {port}", flush=True)
sys.stdin.read()
server.stop(0)
