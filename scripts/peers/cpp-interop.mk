# Builds grpc C++ 1.51.1 interop_server/interop_client and qps_worker/qps_json_driver
# from the Debian `grpc` source tree G against the system libgrpc++ (Debian 1.51.1).
# Driven by build-cpp.sh: make -f cpp-interop.mk G=/path/to/grpc-1.51.1 -j2 <targets>
# (run in the output directory; generated protos are expected in ./gen).
G ?= $(error set G to the grpc source tree)
CXX := g++
CXXFLAGS := -O1 -g0 -std=c++17 -I$(G) -Igen $(shell pkg-config --cflags grpc++ protobuf)
ABSL := -labsl_flags_parse -labsl_flags_internal -labsl_flags_marshalling -labsl_flags_reflection \
  -labsl_flags_usage -labsl_flags_usage_internal -labsl_flags_commandlineflag \
  -labsl_flags_commandlineflag_internal -labsl_flags_config -labsl_flags_program_name \
  -labsl_flags_private_handle_accessor -labsl_failure_signal_handler -labsl_examine_stack \
  -labsl_stacktrace -labsl_symbolize -labsl_debugging_internal -labsl_demangle_internal \
  -labsl_str_format_internal -labsl_strings -labsl_synchronization -labsl_time \
  -labsl_raw_logging_internal -labsl_hash -labsl_raw_hash_set -labsl_city -labsl_low_level_hash \
  -labsl_status -labsl_statusor -labsl_cord -labsl_int128 -labsl_base -labsl_throw_delegate
LIBS := $(shell pkg-config --libs grpc++ grpc protobuf) -lgrpc++ -lgrpc -lgpr -laddress_sorting $(ABSL) -lssl -lcrypto -lpthread

PB := gen/src/proto/grpc/testing
GEN := $(foreach p,test messages empty,$(PB)/$(p).pb.cc $(PB)/$(p).grpc.pb.cc)
QGEN := $(foreach p,benchmark_service control payloads stats worker_service report_qps_scenario_service,$(PB)/$(p).pb.cc $(PB)/$(p).grpc.pb.cc)

# Test support shared by all binaries; the *_cert.cc/*_key.cc files embed grpc's test CA
# and server1 cert, used by --use_tls / --use_test_ca.
COMMON := test/cpp/util/test_config_cc.cc test/cpp/util/test_credentials_provider.cc \
  test/core/util/test_config.cc test/core/util/build.cc test/core/util/stack_tracer.cc \
  test/core/event_engine/test_init.cc test/core/end2end/data/server1_cert.cc \
  test/core/end2end/data/server1_key.cc test/core/end2end/data/test_root_cert.cc \
  test/core/end2end/data/client_certs.cc
SERVER := test/cpp/interop/interop_server.cc test/cpp/interop/interop_server_bootstrap.cc test/cpp/interop/server_helper.cc
CLIENT := test/cpp/interop/client.cc test/cpp/interop/client_helper.cc test/cpp/interop/interop_client.cc \
  test/cpp/util/create_test_channel.cc test/core/security/oauth2_utils.cc test/core/util/histogram.cc
QCOMMON := test/core/util/histogram.cc test/core/util/port.cc test/core/util/port_server_client.cc \
  test/core/util/grpc_profiler.cc test/cpp/util/create_test_channel.cc test/cpp/qps/usage_timer.cc
QWORKER := test/cpp/qps/worker.cc test/cpp/qps/qps_worker.cc test/cpp/qps/client_async.cc \
  test/cpp/qps/client_sync.cc test/cpp/qps/client_callback.cc test/cpp/qps/server_async.cc \
  test/cpp/qps/server_sync.cc test/cpp/qps/server_callback.cc test/cpp/qps/qps_server_builder.cc
QDRIVER := test/cpp/qps/qps_json_driver.cc test/cpp/qps/driver.cc test/cpp/qps/report.cc \
  test/cpp/qps/benchmark_config.cc test/cpp/qps/parse_json.cc test/core/util/subprocess_posix.cc \
  test/cpp/util/subprocess.cc

o = $(patsubst %.cc,obj/%.o,$(1))
GEN_O := $(call o,$(GEN))
QGEN_O := $(call o,$(QGEN))
COMMON_O := $(call o,$(COMMON))
SERVER_O := $(call o,$(SERVER))
CLIENT_O := $(call o,$(CLIENT))
QCOMMON_O := $(call o,$(QCOMMON))
QWORKER_O := $(call o,$(QWORKER))
QDRIVER_O := $(call o,$(QDRIVER))

.PHONY: all interop qps
all: interop qps
interop: interop_server interop_client
qps: qps_worker qps_json_driver

interop_server: $(GEN_O) $(COMMON_O) $(SERVER_O)
	$(CXX) -o $@ $^ $(LIBS)
interop_client: $(GEN_O) $(COMMON_O) $(CLIENT_O)
	$(CXX) -o $@ $^ $(LIBS)
qps_worker: $(GEN_O) $(QGEN_O) $(COMMON_O) $(sort $(QCOMMON_O)) $(QWORKER_O)
	$(CXX) -o $@ $^ $(LIBS)
qps_json_driver: $(GEN_O) $(QGEN_O) $(COMMON_O) $(sort $(QCOMMON_O)) $(QDRIVER_O) $(filter-out obj/test/cpp/qps/worker.o,$(QWORKER_O))
	$(CXX) -o $@ $^ $(LIBS)

obj/gen/%.o: gen/%.cc
	@mkdir -p $(dir $@); echo "  CXX $<"; $(CXX) $(CXXFLAGS) -c $< -o $@
obj/%.o: $(G)/%.cc
	@mkdir -p $(dir $@); echo "  CXX $*.cc"; $(CXX) $(CXXFLAGS) -c $< -o $@
