#include "cli/run_flags.hpp"

#include <unistd.h>

#include "transport/channel.hpp"

namespace cafex::cli {

arg_parser run_parser() {
  arg_parser p("cafex run",
               "Places one worker process per device, ranks and configures them like vLLM's "
               "RayDistributedExecutor, runs --steps steps of the reference model and shuts "
               "down. Without a cluster it starts an embedded node agent on this machine.");
  p.flag({{"--tensor-parallel-size", "--tp"}, "N", "tensor parallel size", "1"})
    .flag({{"--pipeline-parallel-size", "--pp"}, "N", "pipeline parallel size", "1"})
    .flag({{"--steps"}, "N", "model steps to run", "8"})
    .flag({{"--batch"}, "N", "requests in the batch", "4"})
    .flag({{"--seed"}, "N", "seed of weights and prompts", "0"})
    .flag({{"--device"}, "cpu|cuda|auto", "worker device", "auto"})
    .flag({{"--devices"}, "N", "logical devices of the embedded node", "tp x pp"})
    .flag({{"--bundles"}, "N", "placement group size", "tp x pp"})
    .flag({{"--bundle-indices"}, "i,j,...", "bundles to place workers on, one per rank", ""})
    .flag({{"--strategy"}, "S", "pack, spread, strict_pack or strict_spread", "pack"})
    .flag({{"--host-ip"}, "IP", "address of the driver and the embedded node", "127.0.0.1"})
    .flag({{"--num-layers"}, "N", "reference model layers", "4"})
    .flag({{"--hidden-size"}, "N", "reference model hidden size", "128"})
    .flag({{"--num-heads"}, "N", "reference model attention heads", "8"})
    .flag({{"--vocab-size"}, "N", "reference model vocabulary", "512"})
    .flag({{"--start-timeout"}, "SECONDS", "deadline of the whole start-up", "60"})
    .flag({{"--rpc-timeout"}, "SECONDS", "default collective_rpc deadline", "60"})
    .flag({{"--step-timeout"}, "SECONDS", "deadline of one step", "300"})
    .flag({{"--channel"}, "TYPE", "intermediate tensors: auto, nccl, gloo or shm", "auto"})
    .flag({{"--async-scheduling"}, "", "allow 2 steps in flight instead of PP size", ""})
    .flag({{"--log-level"}, "LEVEL", "trace, debug, info, warn, error or off", "warn"})
    .flag({{"--json"}, "", "print one JSON object at the end instead of lines", ""});
  return p;
}

executor_options executor_options_from(const parsed_args& a) {
  executor_options o;
  o.parallel.tensor_parallel_size = static_cast<int>(a.get_int("--tensor-parallel-size", 1, 1, 1024));
  o.parallel.pipeline_parallel_size = static_cast<int>(a.get_int("--pipeline-parallel-size", 1, 1, 1024));
  o.model.seed = static_cast<uint64_t>(a.get_int("--seed", 0, 0, 1L << 62));
  o.model.num_layers = static_cast<int>(a.get_int("--num-layers", o.model.num_layers, 0, 1024));
  o.model.hidden_size = static_cast<int>(a.get_int("--hidden-size", o.model.hidden_size, 1, 65536));
  o.model.num_heads = static_cast<int>(a.get_int("--num-heads", o.model.num_heads, 1, 1024));
  o.model.vocab_size = static_cast<int>(a.get_int("--vocab-size", o.model.vocab_size, 2, 1 << 20));
  auto device = a.get("--device", "auto");
  if (device == "auto") {
    // GPU workers need the CUDA build and a GPU; until then auto means cpu.
    device = "cpu";
  } else if (device == "cuda") {
    throw usage_error{"--device cuda needs a build with CUDA and a GPU on this machine; "
                      "use --device cpu"};
  } else if (device != "cpu") {
    throw usage_error{"--device must be cpu, cuda or auto, got '" + device + "'"};
  }
  o.device = device;
  o.devices = static_cast<int>(a.get_int("--devices", 0, 1, 4096));
  o.bundles = static_cast<int>(a.get_int("--bundles", 0, 1, 4096));
  if (a.has("--bundle-indices"))
    o.bundle_indices = parse_int_list(a.get("--bundle-indices"), "--bundle-indices");
  auto strategy = parse_placement_strategy(a.get("--strategy", "pack"));
  if (!strategy)
    throw usage_error{"--strategy: " + describe(strategy.error())};
  o.strategy = *strategy;
  o.host_ip = a.get("--host-ip", "127.0.0.1");
  o.start_timeout = std::chrono::milliseconds(a.get_int("--start-timeout", 60, 1, 86400) * 1000);
  o.rpc_timeout = std::chrono::milliseconds(a.get_int("--rpc-timeout", 60, 1, 86400) * 1000);
  o.step_timeout = std::chrono::milliseconds(a.get_int("--step-timeout", 300, 1, 86400) * 1000);
  o.log_level = a.get("--log-level", "warn");
  auto channel = parse_channel_type(a.get("--channel", "auto"));
  if (!channel)
    throw usage_error{"--channel: " + describe(channel.error())};
  o.channel = a.get("--channel", "auto");
  o.async_scheduling = a.has("--async-scheduling");
  auto world = o.parallel.world_size();
  if (o.devices > 0 && o.devices < world)
    throw usage_error{"--devices " + std::to_string(o.devices) + " is fewer than tp x pp = "
                      + std::to_string(world) + "; raise --devices or lower --tp/--pp"};
  if (o.bundles > 0 && o.bundles < world)
    throw usage_error{"--bundles " + std::to_string(o.bundles) + " is fewer than tp x pp = "
                      + std::to_string(world)};
  if (o.devices == 0)
    o.devices = std::max(world, o.bundles);
  return o;
}

} // namespace cafex::cli
