// Uses cafex as an installed package: the public headers only. Doubles as its own worker
// program (the host-worker pattern of cafex/worker.hpp), runs one step on tp=1 and prints
// the sampled token, so the install test proves headers, libraries and the program link
// and run.
#include <cstdio>
#include <string>

#include <boost/asio/io_context.hpp>

#include "cafex/asio.hpp"
#include "cafex/executor.hpp"
#include "cafex/worker.hpp"

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "worker")
    return cafex::worker_main(argc, argv, 2);
  cafex::executor_options opts;
  opts.log_level = "warn";
  opts.start_timeout = std::chrono::seconds(30);
  auto ex = cafex::executor::start(opts);
  if (!ex) {
    std::fprintf(stderr, "start failed: %s\n", cafex::describe(ex.error()).c_str());
    return 1;
  }
  cafex::scheduler_output step;
  step.new_requests.push_back({"r0", {1, 2, 3}});
  boost::asio::io_context ioc;
  int rc = 1;
  cafex::async_execute_model(**ex, step, ioc,
                             [&](caf::expected<cafex::model_runner_output> r) {
                               if (r && r->sampled.size() == 1) {
                                 std::printf("token %d\n", r->sampled[0]);
                                 rc = 0;
                               } else {
                                 std::fprintf(stderr, "step failed\n");
                               }
                             });
  ioc.run(); // returns once the handler ran (the work guard kept it busy until then)
  (*ex)->shutdown();
  return rc;
}
