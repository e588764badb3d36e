#include "actors/worker_main.hpp"
#include "cli/commands.hpp"

namespace cafex::cli {

int worker_command(int argc, char** argv) {
  return worker_main(argc, argv, 2);
}

} // namespace cafex::cli
