// The public header of a host's own worker program. Workers run only methods and models
// registered in their executable (no code travels), so a host that adds worker methods
// or models builds its own worker program:
//
//   int main(int argc, char** argv) {
//     if (argc > 1 && std::string(argv[1]) == "worker") {
//       cafex::model_registry::instance().add("mine", [] { return make_my_model(); });
//       cafex::method_table extra;
//       extra.add("ping", [](cafex::worker_state& st, const cafex::json&)
//                            -> caf::expected<cafex::json> { return st.rank; });
//       return cafex::worker_main(argc, argv, 2, extra);
//     }
//     ... the host: executor_options o; o.worker_program = "/path/to/this/program"; ...
//   }
//
// The executor starts `<worker_program> worker <flags>`; with worker_program empty it
// starts the running executable, so a host that handles the `worker` subcommand itself
// (as above, and as cafex-serve does) needs no second binary. Without extra methods,
// `worker_program` may also name the installed `cafex` program.
#pragma once

#include "actors/worker_main.hpp"          // worker_main
#include "actors/worker_methods.hpp"       // method_table, worker_state, worker_method, json
#include "runtime/models/model_runner.hpp" // model_runner, model_registry, model_config
