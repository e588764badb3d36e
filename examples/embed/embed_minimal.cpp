// The smallest host program that embeds cafex: start two CPU workers, call a method on
// every worker, run one model step, shut down. The program is also its own worker
// program: node agents start it again as `embed_minimal worker ...`.
#include <cstdio>
#include <string>

#include "actors/worker_main.hpp"
#include "cafex/executor.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "worker") {
    cafex::method_table extra; // methods this host adds to the built-in ones
    extra.add("hello",
              [](cafex::worker_state& st,
                 const cafex::json& args) -> caf::expected<cafex::json> {
                return "rank " + std::to_string(st.rank) + " says " + args.get<std::string>();
              });
    return cafex::worker_main(argc, argv, 2, extra);
  }
  cafex::executor_options opts;
  opts.parallel.tensor_parallel_size = 2; // two worker processes, ranks 0 and 1
  auto ex = cafex::executor::start(opts);
  if (!ex) {
    std::fprintf(stderr, "start failed: %s\n", cafex::describe(ex.error()).c_str());
    return 1;
  }
  auto replies = (*ex)->collective_rpc("hello", "hi"); // one JSON reply per rank
  if (!replies) {
    std::fprintf(stderr, "rpc failed: %s\n", cafex::describe(replies.error()).c_str());
    return 1;
  }
  for (const auto& r : *replies)
    std::printf("%s\n", r.get<std::string>().c_str());

  cafex::scheduler_output step; // one new request with a 3-token prompt
  step.step_id = 0;
  step.new_requests.push_back({"req-0", {1, 2, 3}});
  auto out = (*ex)->execute_model(step);
  if (!out) {
    std::fprintf(stderr, "step failed: %s\n", cafex::describe(out.error()).c_str());
    return 1;
  }
  std::printf("%s sampled token %d\n", out->req_ids[0].c_str(), out->sampled[0]);
  (*ex)->shutdown(); // stops every worker process; the destructor would too
  return 0;
}
