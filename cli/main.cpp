// cafex: run, generate, node, plan, status, chaos, and the internal worker subcommand.
#include <cstdio>
#include <cstring>
#include <string>

#include "cli/commands.hpp"
#include "runtime/os/signals.hpp"

namespace {

void print_usage(FILE* out) {
  std::fputs("usage: cafex <command> [flags]\n\n"
             "commands:\n"
             "  run      place workers, run the model for --steps steps, shut down\n"
             "  generate generate tokens from prompts with a Hugging Face checkpoint\n"
             "  node     publish a node agent that spawns workers on this machine\n"
             "  plan     dry run: print what would run where, start nothing\n"
             "  status   what each node agent holds: devices, reservations, workers\n"
             "  chaos    run a failure-injection scenario and check its outcome\n"
             "  worker   (internal) a worker process, started by a node agent\n\n"
             "'cafex <command> --help' lists a command's flags.\n",
             out);
}

} // namespace

int main(int argc, char** argv) {
  // Every command (run, node, worker, chaos) survives a peer that vanishes mid-write.
  cafex::ignore_sigpipe();
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    print_usage(stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::printf("cafex %s\n", CAFEX_VERSION);
    return 0;
  }
  if (cmd == "plan")
    return cafex::cli::plan_command(argc, argv);
  if (cmd == "run")
    return cafex::cli::run_command(argc, argv);
  if (cmd == "generate")
    return cafex::cli::generate_command(argc, argv);
  if (cmd == "node")
    return cafex::cli::node_command(argc, argv);
  if (cmd == "status")
    return cafex::cli::status_command(argc, argv);
  if (cmd == "chaos")
    return cafex::cli::chaos_command(argc, argv);
  if (cmd == "worker")
    return cafex::cli::worker_command(argc, argv);
  std::fprintf(stderr,
               "error: unknown command '%s'; commands are run, generate, node, plan, status, "
               "chaos, worker "
               "(see 'cafex --help')\n",
               cmd.c_str());
  return 2;
}
