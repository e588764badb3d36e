#include "cli/run_flags.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <cstdio>
#include <filesystem>

#include "runtime/models/hf/hf_config.hpp"
#include "runtime/plan/cluster_spec.hpp"
#include "runtime/error.hpp"
#include "runtime/logging.hpp"

#include <spdlog/spdlog.h>
#include "runtime/models/collective.hpp"
#include "runtime/os/worker_profiler.hpp"
#include "transport/channel.hpp"
#ifdef CAFEX_HAVE_CUDA
#include "runtime/models/cuda/cuda_memory.hpp"
#endif
#include "transport/link_security.hpp"

namespace cafex::cli {

arg_parser run_parser() {
  arg_parser p("cafex run",
               "Places one worker process per device, ranks and configures them like vLLM's "
               "RayDistributedExecutor, runs --steps steps of the reference model and shuts "
               "down. Without a cluster it starts an embedded node agent on this machine.");
  add_executor_flags(p);
  p.flag({{"--steps"}, "N", "model steps to run", "8"})
    .flag({{"--batch"}, "N", "requests in the batch", "4"})
    .flag({{"--json"}, "", "print one JSON object at the end instead of lines", ""});
  return p;
}

arg_parser& add_executor_flags(arg_parser& p) {
  p.flag({{"--tensor-parallel-size", "--tp", "-tp"}, "N", "tensor parallel size", "1"})
    .flag({{"--pipeline-parallel-size", "--pp", "-pp"}, "N", "pipeline parallel size", "1"})
    .flag({{"--quiet"}, "", "no progress lines on stderr for waits over a second", ""})
    .flag({{"--log-format"}, "text|json", "log lines as text or one JSON object each", "text"})
    .flag({{"--rendezvous-port"},
           "PORT",
           "fixed port of the workers' rendezvous store (torchrun's --master-port)",
           "ephemeral"})
    .flag({{"--seed"}, "N", "seed of weights and prompts", "0"})
    .flag({{"--device"}, "cpu|cuda|auto", "worker device", "auto"})
    .flag({{"--devices"}, "N", "logical devices of the embedded node", "tp x pp"})
    .flag({{"--bundles"}, "N", "placement group size", "tp x pp"})
    .flag({{"--bundle-indices"}, "i,j,...", "bundles to place workers on, one per rank", ""})
    .flag({{"--strategy"}, "S", "pack, spread, strict_pack or strict_spread", "pack"})
    .flag({{"--host-ip"},
           "IP",
           "address of the driver (the seed's VLLM_HOST_IP)",
           "127.0.0.1 embedded, else the interface facing the nodes"})
    .flag(
      {{"--nodes"}, "HOST:PORT,...", "node agents to run on (cafex node); none: embedded", ""})
    .flag({{"--cluster-config"},
           "FILE",
           "JSON: {\"nodes\":[\"HOST:PORT\",...],\"driver_ip\",\"token_file\",\"tls_*\"}",
           ""})
    .flag({{"--token-file"}, "FILE", "cluster token the node agents require", ""})
    .flag({{"--tls-cert"}, "FILE", "driver certificate (PEM); with --tls-key, --tls-ca", ""})
    .flag({{"--tls-key"}, "FILE", "its private key (PEM)", ""})
    .flag({{"--tls-ca"}, "FILE", "CA that signed the agents' certificates (PEM)", ""})
    .flag({{"--gpus-per-worker"}, "X", "share of one device per worker, in (0, 1]", "1"})
    .flag({{"--resource-name"}, "NAME", "what a bundle asks for (custom accelerators)", "GPU"})
    .flag({{"--connect-timeout"}, "SECONDS", "deadline to reach each node agent", "10"})
    .flag({{"--placement-timeout"}, "SECONDS", "how long to wait for free resources", "60"})
    .flag({{"--no-direct-routes"}, "", "reach remote workers through their agent only", ""})
    .flag({{"--report-workers"}, "", "add each worker's rank, node, pid and environment", ""})
    .flag({{"--model"},
           "DIR",
           "Hugging Face checkpoint directory (Llama, Mistral, Qwen2; config.json and "
           "*.safetensors, at this path on every node); none: the reference model",
           ""})
    .flag({{"--kv-cache-tokens"},
           "N",
           "--model: KV cache tokens per shard, for all its requests together",
           "CPU: what 4 GiB of float32 KV holds; GPU: half the memory the weights leave"})
    .flag({{"--random-weights"},
           "",
           "--model on --device cuda: draw bfloat16 weights on the GPU (config.json sets "
           "the shape; no *.safetensors read)",
           ""})
    .flag({{"--enforce-eager"},
           "",
           "--model on --device cuda: run decode steps eagerly, without CUDA graphs",
           ""})
    .flag({{"--pp-layer-partition"},
           "N,N,...",
           "--model: layers per pipeline stage (else $VLLM_PP_LAYER_PARTITION, else "
           "vLLM's even split)",
           ""})
    .flag({{"--num-layers"}, "N", "reference model layers", "4"})
    .flag({{"--hidden-size"}, "N", "reference model hidden size", "128"})
    .flag({{"--num-heads"}, "N", "reference model attention heads", "8"})
    .flag({{"--vocab-size"}, "N", "reference model vocabulary", "512"})
    .flag({{"--start-timeout"}, "SECONDS", "deadline of the whole start-up", "60"})
    .flag({{"--rpc-timeout"}, "SECONDS", "default collective_rpc deadline", "60"})
    .flag({{"--step-timeout"}, "SECONDS", "deadline of one step", "300"})
    .flag(
      {{"--channel"}, "TYPE", "intermediate tensors: auto, nccl, tcp, gloo or shm", "auto"})
    .flag({{"--tp-transport"},
           "TYPE",
           "CPU TP collectives: auto (shm on one node, else tcp), shm, tcp or gloo",
           "auto"})
    .flag({{"--async-scheduling"}, "", "allow 2 steps in flight instead of PP size", ""})
    .flag({{"--hot-spin"},
           "MICROSECONDS",
           "same-node workers spin this long after a step before they sleep (0: never)",
           "20000"})
    .flag({{"--no-direct-lane"},
           "",
           "send every step and call through the driver actor, never straight over the "
           "shared-memory rings",
           ""})
    .flag({{"--on-worker-failure"},
           "fail|restart",
           "lost worker: fail the executor, or replace it and rebuild communicators",
           "fail"})
    .flag({{"--max-restarts"}, "N", "restart: recoveries allowed before giving up", "3"})
    .flag({{"--worker-profiler"},
           "nsys",
           "run workers under Nsight Systems (the seed's "
           "ray_workers_use_nsight)",
           "none"})
    .flag({{"--log-level"}, "LEVEL", "trace, debug, info, warn, error or off", "warn"});
  return p;
}

namespace {

/// GPUs this process sees; -1 when the build has no CUDA.
/// Whether this machine can bind a socket to `ip` (one of its own addresses).
bool is_local_address(const std::string& ip) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0)
    return true; // cannot tell: let the real bind report it
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = 0;
  const bool parsed = ::inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) == 1;
  const bool ok = !parsed || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0
                  || errno != EADDRNOTAVAIL;
  ::close(fd);
  return ok;
}

int visible_gpus() {
#ifdef CAFEX_HAVE_CUDA
  return cuda_device_count();
#else
  return -1;
#endif
}

void cluster_from(const parsed_args& a, cluster_options& c) {
  if (a.has("--nodes")) {
    std::string item;
    for (char ch : a.get("--nodes") + ",") {
      if (ch != ',') {
        item += ch;
        continue;
      }
      if (!item.empty()) {
        std::string host;
        uint16_t port = 0;
        if (auto err = parse_host_port(item, "--nodes", host, port))
          throw usage_error{message_of(err)};
        c.nodes.push_back(item);
      }
      item.clear();
    }
    if (c.nodes.empty())
      throw usage_error{"--nodes expects HOST:PORT,... (the addresses cafex node printed)"};
  }
  if (a.has("--token-file")) {
    if (auto warn = token_file_warning(a.get("--token-file")); !warn.empty())
      std::fprintf(stderr, "warning: %s\n", warn.c_str());
    auto tok = read_token_file(a.get("--token-file"));
    if (!tok)
      throw usage_error{"--token-file: " + message_of(tok.error())};
    c.security.token = *tok;
  }
  c.security.tls_cert = a.get("--tls-cert");
  c.security.tls_key = a.get("--tls-key");
  c.security.tls_ca = a.get("--tls-ca");
  if (a.has("--cluster-config"))
    if (auto err = load_cluster_config(a.get("--cluster-config"), c))
      throw usage_error{"--cluster-config: " + message_of(err)};
  if (auto err = check_tls_files(c.security))
    throw usage_error{message_of(err)};
  if (c.nodes.empty() && c.security.enabled())
    throw usage_error{"--token-file and --tls-* secure the link to node agents; name them "
                      "with --nodes or --cluster-config (the embedded default needs neither)"};
  if (c.nodes.empty() && a.has("--connect-timeout"))
    throw usage_error{"--connect-timeout is the deadline to reach node agents; without "
                      "--nodes or --cluster-config there is none to reach: drop the flag"};
  auto share = a.get_double("--gpus-per-worker", 1.0, -1e300, 1e300);
  if (!(share > 0.0 && share <= 1.0))
    throw usage_error{"--gpus-per-worker must be in (0, 1], e.g. 1 or 0.5, got "
                      + a.get("--gpus-per-worker")};
  c.gpus_per_worker = share;
  c.resource_name = a.get("--resource-name", "GPU");
  if (c.resource_name.empty())
    throw usage_error{"--resource-name must not be empty (e.g. GPU)"};
  c.connect_timeout = std::chrono::milliseconds(a.get_int("--connect-timeout", 10, 1, 3600)
                                                * 1000);
  c.placement_timeout = std::chrono::milliseconds(
    a.get_int("--placement-timeout", 60, 0, 86400) * 1000);
  c.direct_worker_routes = !a.has("--no-direct-routes");
}

/// --model DIR: the "hf" runner on that checkpoint, whose config.json (checked here, so
/// that a bad one is a usage error before any worker starts) sets the model's sizes.
void checkpoint_from(const parsed_args& a, executor_options& o) {
  for (const char* f : {"--num-layers", "--hidden-size", "--num-heads", "--vocab-size"})
    if (a.has(f))
      throw usage_error{std::string(f)
                        + " sizes the reference model; with --model the checkpoint's "
                          "config.json sets it: drop the flag"};
  std::error_code ec;
  auto dir = std::filesystem::absolute(a.get("--model"), ec).lexically_normal().string();
  if (ec || !std::filesystem::is_directory(dir, ec))
    throw usage_error{"--model " + a.get("--model")
                      + " is not a directory: name a Hugging Face checkpoint directory "
                        "(config.json and *.safetensors)"};
  auto hf = hf::load_hf_config(dir);
  if (!hf)
    throw usage_error{"--model: " + message_of(hf.error())};
  if (auto err = hf::check_tp(*hf, o.parallel.tensor_parallel_size))
    throw usage_error{message_of(err)};
  std::string partition = a.get("--pp-layer-partition");
  std::string source = "--pp-layer-partition";
  const char* env = std::getenv("VLLM_PP_LAYER_PARTITION");
  if (partition.empty() && env != nullptr && *env != 0) {
    partition = env;
    source = "VLLM_PP_LAYER_PARTITION";
  }
  auto parts = hf::parse_layer_partition(partition);
  if (!parts)
    throw usage_error{source + ": " + message_of(parts.error())};
  auto layers = hf::pp_indices(hf->num_layers, 0, o.parallel.pipeline_parallel_size, *parts);
  if (!layers)
    throw usage_error{source + ": " + message_of(layers.error())};
  o.model.name = "hf";
  o.model.path = dir;
  o.model.pp_layer_partition = partition;
  o.model.vocab_size = static_cast<int>(hf->vocab_size);
  o.model.hidden_size = static_cast<int>(hf->hidden_size);
  o.model.num_layers = hf->num_layers;
  o.model.num_heads = hf->num_heads;
  o.model.max_seq_len = static_cast<int>(hf->max_position);
  o.model.kv_cache_tokens = a.get_int("--kv-cache-tokens", 0, 1, 1L << 40);
  o.model.random_weights = a.has("--random-weights");
  o.model.enforce_eager = a.has("--enforce-eager");
}

} // namespace

void cluster_flags_from(const parsed_args& args, cluster_options& into) {
  cluster_from(args, into);
}

executor_options executor_options_from(const parsed_args& a) {
  executor_options o;
  o.parallel.tensor_parallel_size = static_cast<int>(
    a.get_int("--tensor-parallel-size", 1, 1, 1024));
  o.parallel.pipeline_parallel_size = static_cast<int>(
    a.get_int("--pipeline-parallel-size", 1, 1, 1024));
  o.model.seed = static_cast<uint64_t>(a.get_int("--seed", 0, 0, 1L << 62));
  o.model.num_layers = static_cast<int>(
    a.get_int("--num-layers", o.model.num_layers, 0, 1024));
  o.model.hidden_size = static_cast<int>(
    a.get_int("--hidden-size", o.model.hidden_size, 1, 65536));
  o.model.num_heads = static_cast<int>(a.get_int("--num-heads", o.model.num_heads, 1, 1024));
  o.model.vocab_size = static_cast<int>(
    a.get_int("--vocab-size", o.model.vocab_size, 2, 1 << 20));
  const bool checkpoint = a.has("--model");
  if (checkpoint) {
    checkpoint_from(a, o);
  } else {
    for (const char* f :
         {"--kv-cache-tokens", "--pp-layer-partition", "--random-weights", "--enforce-eager"})
      if (a.has(f))
        throw usage_error{std::string(f)
                          + " applies to a checkpoint: name it with --model DIR"};
  }
  auto device = lower_case(a.get("--device", "auto"));
  int gpus = visible_gpus();
  if (device == "auto") {
    device = gpus > 0 ? "cuda" : "cpu";
  } else if (device == "cuda") {
    if (gpus <= 0)
      throw usage_error{gpus < 0
                          ? "--device cuda needs a build with CUDA (this one has none); "
                            "use --device cpu"
                          : "--device cuda: no GPU is visible on this machine; use "
                            "--device cpu"};
  } else if (device != "cpu") {
    throw usage_error{"--device must be cpu, cuda or auto, got '" + device + "'"};
  }
  if (o.model.random_weights && device != "cuda")
    throw usage_error{"--random-weights: the weights are drawn on the GPU: add --device cuda "
                      "(or drop --random-weights to read the checkpoint's *.safetensors)"};
  o.device = device;
  o.devices = static_cast<int>(a.get_int("--devices", 0, 1, 4096));
  o.bundles = static_cast<int>(a.get_int("--bundles", 0, 1, 4096));
  if (a.has("--bundle-indices"))
    o.bundle_indices = parse_int_list(a.get("--bundle-indices"), "--bundle-indices");
  auto strategy = parse_placement_strategy(a.get("--strategy", "pack"));
  if (!strategy)
    throw usage_error{"--strategy: " + message_of(strategy.error())};
  o.strategy = *strategy;
  o.host_ip = a.get("--host-ip", "");
  if (!o.host_ip.empty() && !is_ipv4(o.host_ip))
    throw usage_error{"--host-ip must be an IPv4 address such as 10.0.0.1, got '" + o.host_ip
                      + "'"};
  if (!o.host_ip.empty() && !is_local_address(o.host_ip))
    throw usage_error{"--host-ip " + o.host_ip
                      + " is not an address of this machine (nothing can listen on it): name "
                        "one of its addresses (ip -4 addr), or drop the flag"};
  o.rendezvous_port = static_cast<uint16_t>(a.get_int("--rendezvous-port", 0, 1, 65535));
  if (!a.has("--quiet"))
    o.on_progress = [](const std::string& line) {
      if (log_format() == "json")
        spdlog::warn("{}", line); // stderr stays one JSON object per line
      else
        std::fprintf(stderr, "cafex: %s\n", line.c_str());
    };
  cluster_from(a, o.cluster);
  if (a.has("--devices") && !o.cluster.nodes.empty())
    throw usage_error{"--devices sizes the embedded node agent; with --nodes or "
                      "--cluster-config the agents report their own devices (cafex node "
                      "--devices / --gpus): drop the flag"};
  o.start_timeout = std::chrono::milliseconds(a.get_int("--start-timeout", 60, 1, 86400)
                                              * 1000);
  o.rpc_timeout = std::chrono::milliseconds(a.get_int("--rpc-timeout", 60, 1, 86400) * 1000);
  o.step_timeout = std::chrono::milliseconds(a.get_int("--step-timeout", 300, 1, 86400)
                                             * 1000);
  o.log_level = lower_case(a.get("--log-level", "warn"));
  if (auto err = set_log_format(lower_case(a.get("--log-format", "text"))))
    throw usage_error{"--log-format: " + message_of(err)};
  o.channel = lower_case(a.get("--channel", "auto"));
  auto channel = parse_channel_type(o.channel);
  if (!channel)
    throw usage_error{"--channel: " + message_of(channel.error())};
  if (o.channel == "nccl" && o.device != "cuda")
    throw usage_error{"--channel nccl hands the hidden states from GPU to GPU: it needs "
                      "GPU workers (--device cuda on a machine with GPUs); use --channel shm, "
                      "tcp or auto"};
  o.tp_transport = lower_case(a.get("--tp-transport", "auto"));
  if (auto err = check_tp_transport(o.tp_transport))
    throw usage_error{"--tp-transport: " + message_of(err)};
  o.async_scheduling = a.has("--async-scheduling");
  o.hot_spin = std::chrono::microseconds(a.get_int("--hot-spin", 20000, 0, 1000000));
  o.direct_lane = !a.has("--no-direct-lane");
  auto policy = lower_case(a.get("--on-worker-failure", "fail"));
  if (policy == "restart")
    o.on_worker_failure = failure_policy::restart;
  else if (policy != "fail")
    throw usage_error{"--on-worker-failure must be fail or restart, got '" + policy + "'"};
  o.max_restarts = static_cast<int>(a.get_int("--max-restarts", 3, 0, 1000));
  auto profiler = parse_worker_profiler(a.get("--worker-profiler", "none"));
  if (!profiler)
    throw usage_error{"--worker-profiler: " + message_of(profiler.error())};
  if (*profiler != worker_profiler::none) {
    const char* path = std::getenv("PATH");
    if (find_executable(profiler_program(*profiler), path ? path : "").empty())
      throw usage_error{"--worker-profiler " + a.get("--worker-profiler")
                        + ": nsys is not on PATH; install Nsight Systems or drop the flag"};
    o.cluster.worker_profiler = to_string(*profiler);
  }
  auto world = o.parallel.world_size();
  if (o.devices > 0 && o.devices < world)
    throw usage_error{"--devices " + std::to_string(o.devices) + " is fewer than tp x pp = "
                      + std::to_string(world) + "; raise --devices or lower --tp/--pp"};
  if (o.bundles > 0 && o.bundles < world)
    throw usage_error{"--bundles " + std::to_string(o.bundles)
                      + " is fewer than tp x pp = " + std::to_string(world)};
  if (o.devices == 0)
    o.devices = std::max(world, o.bundles);
  return o;
}

} // namespace cafex::cli
