// Temporary until each command lands.
#include "cli/commands.hpp"
namespace cafex::cli {
int run_command(int, char**) { return 1; }
int node_command(int, char**) { return 1; }
int worker_command(int, char**) { return 1; }
}
