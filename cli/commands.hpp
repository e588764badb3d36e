#pragma once
namespace cafex::cli {
/// Each returns the process exit code: 0 ok, 1 runtime failure, 2 bad input.
int plan_command(int argc, char** argv);
int run_command(int argc, char** argv);
int generate_command(int argc, char** argv);
int node_command(int argc, char** argv);
int worker_command(int argc, char** argv);
int chaos_command(int argc, char** argv);
int status_command(int argc, char** argv);
} // namespace cafex::cli
