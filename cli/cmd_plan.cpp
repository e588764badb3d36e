// `cafex plan`: a dry run of start-up. It places bundles on a cluster described in a
// file, "creates" one worker per selected bundle, lets each answer what a live worker
// would (its node, IP and GPU), and prints the seed's rank plan. Nothing is started.
//
// Exit codes: 0 printed a plan; 2 bad input (nothing on stdout, one "error: " line on
// stderr); 1 anything else. Output is built in full before it is printed so that a
// late failure never leaves half a plan on stdout.
#include <climits>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/args.hpp"
#include "cli/commands.hpp"
#include "cli/open_port.hpp"
#include "runtime/plan/cluster_spec.hpp"
#include "runtime/plan/env_policy.hpp"
#include "runtime/error.hpp"
#include "runtime/plan/placement.hpp"
#include "runtime/plan/rank_plan.hpp"

namespace cafex::cli {

namespace {

constexpr int exit_bad_input = 2;
constexpr int exit_failure = 1;

// A failure with the exit code it maps to.
struct plan_failure {
  int code;
  std::string what;
};

// Bad input is a caf::error from the planning logic; map it to exit 2.
template <class T>
T value_or_throw(caf::expected<T> x) {
  if (!x)
    throw plan_failure{exit_bad_input, describe(x.error())};
  return std::move(*x);
}

arg_parser make_parser() {
  arg_parser p("cafex plan",
               "Dry run of start-up: place bundles on the cluster described in --cluster,\n"
               "rank the workers as the driver would, and print the plan. Starts nothing.");
  p.flag({{"--cluster"},
          "FILE",
          "cluster description: {\"driver_ip\":..., \"nodes\":[{\"node_id\",\"ip\","
          "\"gpu_ids\"}]} (required)",
          ""});
  p.flag({{"--tensor-parallel-size", "--tp"}, "T", "tensor parallel size", "1"});
  p.flag({{"--pipeline-parallel-size", "--pp"}, "P", "pipeline parallel size", "1"});
  p.flag({{"--bundles"}, "N", "bundles to place (at least tp * pp)", "tp * pp"});
  p.flag({{"--bundle-indices"},
          "I,J,..",
          "bundles the workers take, one per rank (the seed's VLLM_RAY_BUNDLE_INDICES)",
          "the first tp * pp"});
  p.flag({{"--strategy"}, "S", "placement: pack, spread, strict_pack, strict_spread", "pack"});
  p.flag({{"--gpus-per-worker"}, "X", "share of one GPU per worker, in (0, 1]", "1"});
  p.flag({{"--port"}, "N", "rendezvous port of distributed_init_method", "a free port"});
  p.flag({{"--json"}, "", "print one JSON object instead of tables", ""});
  return p;
}

struct plan_inputs {
  parallel_config par;
  placement_request req;
  placement_strategy strategy = placement_strategy::pack;
};

std::string render_json(const plan_inputs& in, const std::vector<bundle>& bundles,
                        const rank_plan& plan) {
  using ojson = nlohmann::ordered_json;
  ojson j;
  j["world_size"] = in.par.world_size();
  j["tensor_parallel_size"] = in.par.tensor_parallel_size;
  j["pipeline_parallel_size"] = in.par.pipeline_parallel_size;
  j["placement_strategy"] = to_string(in.req.strategy);
  j["distributed_init_method"] = plan.distributed_init_method;
  j["bundles"] = ojson::array();
  for (const auto& b : bundles)
    j["bundles"].push_back({{"index", b.index}, {"node_id", b.node_id}, {"gpu_id", b.gpu_id}});
  j["workers"] = ojson::array();
  for (const auto& w : plan.workers) {
    ojson env = ojson::object();
    for (const auto& [k, v] : w.env)
      env[k] = v;
    j["workers"].push_back({{"rank", w.rank},
                            {"created_rank", w.created_rank},
                            {"bundle_index", w.bundle_index},
                            {"node_id", w.node_id},
                            {"ip", w.ip},
                            {"gpu_ids", w.gpu_ids},
                            {"local_rank", w.local_rank},
                            {"is_driver_worker", w.is_driver_worker},
                            {"env", env}});
  }
  j["pp_tp_workers"] = plan.pp_tp_ranks;
  return j.dump() + "\n";
}

std::string render_table(const plan_inputs& in, const std::vector<bundle>& bundles,
                         const rank_plan& plan, const env_map& copied) {
  size_t nw = 4, iw = 2; // widths of the node and ip columns
  for (const auto& b : bundles) {
    nw = std::max(nw, b.node_id.size());
    iw = std::max(iw, b.ip.size());
  }
  std::string out;
  out += fmt::format("world size {} (tp {} x pp {}), strategy {}, {} bundles {{GPU: {}}}\n",
                     in.par.world_size(), in.par.tensor_parallel_size,
                     in.par.pipeline_parallel_size, to_string(in.req.strategy), bundles.size(),
                     in.req.devices_per_bundle);
  out += "distributed_init_method " + plan.distributed_init_method + "\n\nbundles\n";
  out += fmt::format("  {:>5}  {:<{}}  {:<{}}  {:>3}\n", "index", "node", nw, "ip", iw, "gpu");
  for (const auto& b : bundles)
    out += fmt::format("  {:>5}  {:<{}}  {:<{}}  {:>3}\n", b.index, b.node_id, nw, b.ip, iw,
                       b.gpu_id);
  out += "\nworkers (by rank)\n";
  constexpr auto row = FMT_STRING(
    "  {:>4}  {:>7}  {:>6}  {:<{}}  {:<{}}  {:<6}  {:>10}  {:<13}  {}{}{}\n");
  out += fmt::format(row, "rank", "created", "bundle", "node", nw, "ip", iw, "gpus",
                     "local_rank", "driver_worker", "devices", "", "");
  const std::string device_var = "CUDA_VISIBLE_DEVICES";
  for (const auto& w : plan.workers) {
    out += fmt::format(row, w.rank, w.created_rank, w.bundle_index, w.node_id, nw, w.ip, iw,
                       fmt::join(w.gpu_ids, ","), w.local_rank,
                       w.is_driver_worker ? "yes" : "no", device_var, "=",
                       w.env.at(device_var));
  }
  out += "\npipeline stages (pp x tp ranks)\n";
  for (size_t p = 0; p < plan.pp_tp_ranks.size(); ++p)
    out += fmt::format("  pp {}: {}\n", p, fmt::join(plan.pp_tp_ranks[p], " "));
  out += "\ncopied from the driver to every worker";
  out += copied.empty() ? ": none\n" : "\n";
  for (const auto& [k, v] : copied)
    out += "  " + k + "=" + v + "\n";
  return out;
}

std::string run_plan(int argc, char** argv) {
  auto parser = make_parser();
  auto args = parser.parse(argc, argv, 2);
  if (parser.help_requested(args))
    return parser.help();
  if (!args.positional.empty())
    throw usage_error{"unexpected argument '" + args.positional.front()
                      + "'; see 'cafex plan --help'"};
  if (!args.has("--cluster"))
    throw usage_error{"missing --cluster FILE (the cluster description to plan for); "
                      "see 'cafex plan --help'"};

  plan_inputs in;
  in.par.tensor_parallel_size = static_cast<int>(
    args.get_int("--tensor-parallel-size", 1, INT_MIN, INT_MAX));
  in.par.pipeline_parallel_size = static_cast<int>(
    args.get_int("--pipeline-parallel-size", 1, INT_MIN, INT_MAX));
  if (auto err = validate(in.par))
    throw plan_failure{exit_bad_input, describe(err)};
  const int world = in.par.world_size();
  const long bundles = args.get_int("--bundles", world, 1, 1000000);
  if (bundles < world)
    throw usage_error{"--bundles " + std::to_string(bundles) + " is below the world size "
                      + std::to_string(world) + " (tp x pp); pass --bundles "
                      + std::to_string(world) + " or more, or leave it out"};
  in.req.num_bundles = static_cast<int>(bundles);
  in.req.devices_per_bundle = args.get_double("--gpus-per-worker", 1.0, -1e9, 1e9);
  if (!(in.req.devices_per_bundle > 0.0 && in.req.devices_per_bundle <= 1.0))
    throw usage_error{"--gpus-per-worker must be in (0, 1], got "
                      + args.get("--gpus-per-worker")
                      + "; a worker uses one GPU or a share of one (e.g. 0.5)"};
  in.req.strategy = value_or_throw(parse_placement_strategy(args.get("--strategy", "pack")));
  std::vector<int> user_indices;
  if (args.has("--bundle-indices"))
    user_indices = parse_int_list(args.get("--bundle-indices"), "--bundle-indices");
  const int port = args.has("--port") ? static_cast<int>(args.get_int("--port", 0, 1, 65535))
                                      : 0;

  auto cluster = value_or_throw(load_cluster_file(args.get("--cluster")));
  auto placed = value_or_throw(place_bundles(cluster, in.req));
  auto selected = value_or_throw(
    select_bundle_indices(placed, world,
                          args.has("--bundle-indices") ? &user_indices : nullptr));

  // What each worker would answer to get_node_ip / get_node_and_gpu_ids.
  std::vector<worker_report> reports;
  for (size_t rank = 0; rank < selected.size(); ++rank) {
    const auto& b = placed[static_cast<size_t>(selected[rank])];
    reports.push_back(
      {static_cast<int>(rank), b.index, b.ip, b.node_id, {std::to_string(b.gpu_id)}});
  }
  // Secrets never reach a terminal or a CI log, even in a dry run.
  auto driver_env = read_process_environment();
  auto copied = redact_secrets(select_env_to_copy(driver_env, default_env_policy(driver_env)));

  int init_port = port;
  if (init_port == 0) {
    auto open = get_open_port();
    if (!open)
      throw plan_failure{exit_failure, describe(open.error())};
    init_port = *open;
  }
  auto plan = value_or_throw(
    plan_ranks(reports, cluster.driver_ip, in.par, copied, init_port));
  return args.has("--json") ? render_json(in, placed, plan)
                            : render_table(in, placed, plan, copied);
}

// Exactly one line on stderr, whatever the message holds.
int fail(int code, std::string what) {
  for (auto& c : what)
    if (c == '\n' || c == '\r')
      c = ' ';
  std::fprintf(stderr, "error: %s\n", what.c_str());
  return code;
}

} // namespace

int plan_command(int argc, char** argv) {
  std::string out;
  try {
    out = run_plan(argc, argv);
  } catch (const usage_error& e) {
    return fail(exit_bad_input, e.what);
  } catch (const plan_failure& e) {
    return fail(e.code, e.what);
  } catch (const std::exception& e) {
    return fail(exit_failure, std::string("internal error in cafex plan: ") + e.what());
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return std::fflush(stdout) == 0 ? 0 : exit_failure;
}

} // namespace cafex::cli
