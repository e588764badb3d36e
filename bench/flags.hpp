// The benchmarks' command lines, parsed by the same parser as the `cafex` commands
// (cli/args.hpp): generated --help, `--flag value` and `--flag=value`, range checks, and
// one `error:` line with exit 2 for a bad command line.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "cli/args.hpp"

namespace cafex::bench {

/// Parses argv[1..) with `parser` and hands the result to `read`, which takes its
/// values out (the getters check ranges). --help prints the help and exits 0; a bad flag
/// or value prints `error: ...` and exits 2.
template <class Read>
void parse_flags(const cli::arg_parser& parser, int argc, char** argv, Read&& read) {
  try {
    auto args = parser.parse(argc, argv, 1);
    if (parser.help_requested(args)) {
      std::fputs(parser.help().c_str(), stdout);
      std::exit(0);
    }
    if (!args.positional.empty())
      throw cli::usage_error{"unexpected argument '" + args.positional.front()
                             + "'; see --help"};
    read(args);
  } catch (const cli::usage_error& e) {
    std::fprintf(stderr, "error: %s\n", e.what.c_str());
    std::exit(2);
  }
}

} // namespace cafex::bench
