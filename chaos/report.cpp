// The verdict on a scenario run and its human and JSON forms.
#include <sstream>

#include "chaos/runner.hpp"

namespace cafex {

namespace {

using outc = scenario_expectation::outcome;

bool has(const std::string& text, const std::string& part) {
  return part.empty() || text.find(part) != std::string::npos;
}

std::string quoted_error(const std::string& kind, const std::string& text) {
  return kind + " (\"" + text + "\")";
}

/// The kind, text and time checks of an observed error; empty when they hold.
std::string error_mismatch(const scenario_expectation& e, const std::string& kind,
                           const std::string& text) {
  bool match = false;
  std::string alternatives = e.error + "|";
  for (size_t pos = 0, bar; (bar = alternatives.find('|', pos)) != std::string::npos;
       pos = bar + 1)
    match = match || alternatives.substr(pos, bar - pos) == kind;
  if (!match)
    return "expected error kind " + e.error + ", got " + quoted_error(kind, text);
  if (!has(text, e.contains))
    return "the error does not contain \"" + e.contains + "\": " + quoted_error(kind, text);
  return "";
}

nlohmann::json run_json(const chaos_run& r) {
  nlohmann::json j = {{"started", r.started},
                      {"steps_ok", r.steps_ok},
                      {"wall_ms", r.wall_ms},
                      {"shutdown_ms", r.shutdown_ms},
                      {"faults_applied", r.faults_applied},
                      {"tokens", r.tokens}};
  if (!r.started) {
    j["start_error"] = {{"kind", r.start_error_kind}, {"text", r.start_error_text}};
    if (r.fault_to_start_error_ms >= 0)
      j["start_error"]["fault_to_error_ms"] = r.fault_to_start_error_ms;
  }
  if (r.saw_error)
    j["error"] = {{"kind", r.error_kind},
                  {"text", r.error_text},
                  {"fault_to_error_ms", r.fault_to_error_ms},
                  {"later_errors", r.later_errors}};
  if (r.recovery_ms >= 0)
    j["recovery_ms"] = r.recovery_ms;
  if (!r.note.empty())
    j["note"] = r.note;
  return j;
}

} // namespace

void judge(const scenario& s, chaos_report& rep) {
  const auto& e = s.expect;
  const auto& r = rep.faulty;
  auto fail = [&](std::string why) {
    rep.pass = false;
    rep.reason = std::move(why);
  };
  auto pass = [&](std::string why) {
    rep.pass = true;
    rep.reason = std::move(why);
  };
  if (rep.compared_tokens && !rep.baseline.started)
    return fail("the baseline run (no faults) did not start: "
                + rep.baseline.start_error_text);
  if (rep.compared_tokens && rep.baseline.saw_error)
    return fail("the baseline run (no faults) failed: "
                + quoted_error(rep.baseline.error_kind, rep.baseline.error_text));
  if (e.what == outc::start_error) {
    if (r.started)
      return fail("expected start-up to fail with " + e.error + ", but it succeeded");
    auto why = error_mismatch(e, r.start_error_kind, r.start_error_text);
    if (!why.empty())
      return fail(why);
    bool at_startup = false;
    for (const auto& f : s.faults)
      at_startup = at_startup || f.during.has_value();
    if (!at_startup)
      return pass("start-up failed as expected: " + r.start_error_kind);
    if (r.fault_to_start_error_ms < 0)
      return fail("start-up failed before any start-up fault was applied: "
                  + quoted_error(r.start_error_kind, r.start_error_text));
    if (r.fault_to_start_error_ms > e.within_ms)
      return fail("start-up failed " + std::to_string(r.fault_to_start_error_ms)
                  + " ms after the fault, over the bound of " + std::to_string(e.within_ms)
                  + " ms");
    return pass("start-up failed as expected: " + r.start_error_kind + ", "
                + std::to_string(r.fault_to_start_error_ms) + " ms after the fault");
  }
  if (!r.started)
    return fail("start-up failed: " + quoted_error(r.start_error_kind, r.start_error_text));
  auto steps = std::to_string(r.steps_ok) + "/" + std::to_string(s.steps) + " steps";
  switch (e.what) {
    case outc::success:
      if (r.saw_error)
        return fail("expected success, got " + quoted_error(r.error_kind, r.error_text));
      if (r.steps_ok != s.steps)
        return fail("only " + steps + " succeeded" + (r.note.empty() ? "" : ": " + r.note));
      if (rep.compared_tokens && !rep.same_tokens)
        return fail("every step succeeded but the tokens differ from the no-fault run");
      return pass(steps + " succeeded"
                  + std::string(rep.compared_tokens ? ", tokens equal the no-fault run" : ""));
    case outc::error: {
      if (!r.saw_error)
        return fail("expected error " + e.error + ", but none reached the caller (" + steps
                    + " succeeded)");
      auto why = error_mismatch(e, r.error_kind, r.error_text);
      if (!why.empty())
        return fail(why);
      if (r.fault_to_error_ms < 0)
        return fail("the error reached the caller before any fault was applied: "
                    + quoted_error(r.error_kind, r.error_text));
      if (r.fault_to_error_ms > e.within_ms)
        return fail("the error reached the caller " + std::to_string(r.fault_to_error_ms)
                    + " ms after the fault, over the bound of " + std::to_string(e.within_ms)
                    + " ms");
      if (e.later_steps_succeed && (r.steps_ok != s.steps || r.later_errors > 0))
        return fail("the error was right but later steps did not all succeed (" + steps + ", "
                    + std::to_string(r.later_errors) + " later error(s))");
      return pass(r.error_kind + " reached the caller " + std::to_string(r.fault_to_error_ms)
                  + " ms after the fault"
                  + (e.later_steps_succeed ? "; " + steps + " succeeded" : ""));
    }
    case outc::recovered:
      if (!r.saw_error)
        return fail("expected steps in flight to fail and the executor to recover, but no "
                    "error reached the caller");
      if (r.recovery_ms < 0)
        return fail("the executor did not recover: "
                    + (r.note.empty() ? "no ready state" : r.note)
                    + " (first error: " + quoted_error(r.error_kind, r.error_text) + ")");
      if (r.recovery_ms > e.within_ms)
        return fail("ready again " + std::to_string(r.recovery_ms)
                    + " ms after the fault, "
                      "over the bound of "
                    + std::to_string(e.within_ms) + " ms");
      if (r.steps_ok != s.steps)
        return fail("recovered, but only " + steps + " succeeded"
                    + (r.note.empty() ? "" : ": " + r.note));
      if (!rep.same_tokens)
        return fail("recovered, but the tokens differ from the no-fault run");
      return pass("recovered " + std::to_string(r.recovery_ms) + " ms after the fault; "
                  + steps + ", tokens equal the no-fault run");
    case outc::start_error: break;
  }
}

nlohmann::json chaos_report::to_json() const {
  nlohmann::json j = {{"name", name},
                      {"pass", pass},
                      {"reason", reason},
                      {"run", run_json(faulty)}};
  if (compared_tokens) {
    j["baseline"] = run_json(baseline);
    j["same_tokens"] = same_tokens;
  }
  return j;
}

std::string chaos_report::to_text() const {
  std::ostringstream o;
  o << "scenario: " << (name.empty() ? "(unnamed)" : name) << "\n";
  o << "result:   " << (pass ? "PASS" : "FAIL") << ": " << reason << "\n";
  for (const auto& f : faulty.faults_applied)
    o << "fault:    " << f << "\n";
  if (!faulty.started) {
    o << "start-up: " << faulty.start_error_text << "\n";
    if (faulty.fault_to_start_error_ms >= 0)
      o << "fault -> start-up error: " << faulty.fault_to_start_error_ms << " ms\n";
  }
  if (faulty.saw_error) {
    o << "error:    " << faulty.error_kind << ": " << faulty.error_text << "\n";
    if (faulty.fault_to_error_ms >= 0)
      o << "fault -> caller: " << faulty.fault_to_error_ms << " ms\n";
  }
  if (faulty.recovery_ms >= 0)
    o << "recovery: ready " << faulty.recovery_ms << " ms after the fault\n";
  if (!faulty.note.empty())
    o << "note:     " << faulty.note << "\n";
  o << "steps:    " << faulty.steps_ok << " ok";
  if (compared_tokens)
    o << "; tokens " << (same_tokens ? "equal" : "differ from") << " the no-fault run";
  o << "; run " << static_cast<int64_t>(faulty.wall_ms) << " ms (shutdown "
    << static_cast<int64_t>(faulty.shutdown_ms) << " ms)\n";
  return o.str();
}

} // namespace cafex
