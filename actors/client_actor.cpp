#include "actors/client_actor.hpp"

#include <map>

#include "actors/deadline_timer.hpp"
#include "runtime/dataflow/deadline_queue.hpp"
#include "runtime/error.hpp"

namespace cafex {

namespace {

struct client_state {
  uint64_t next = 0;
  std::map<uint64_t, step_callback> pending; ///< by call number, until answered
  /// The steps' deadlines behind one timer: a request timeout per step would stay in
  /// CAF 0.17's clock for the whole timeout even once the driver answered.
  deadline_queue deadlines;
  static inline const char* name = "cafex.client";
};

using client_ptr = caf::stateful_actor<client_state>*;

/// Calls back call `id` once; a late answer (after its deadline failed it) is dropped.
void answer(client_ptr self, uint64_t id, caf::expected<model_runner_output> r) {
  auto& st = self->state;
  auto i = st.pending.find(id);
  if (i == st.pending.end())
    return;
  auto done = std::move(i->second);
  st.pending.erase(i);
  st.deadlines.remove(id);
  done(std::move(r));
}

} // namespace

caf::actor spawn_client(caf::actor_system& sys, const driver_actor& driver,
                        std::chrono::milliseconds timeout) {
  return sys.spawn([driver, timeout](client_ptr self) -> caf::behavior {
    // The driver answers (or fails) every step before it quits, and its down message
    // comes after those answers: leaving then loses nothing.
    self->monitor(driver);
    self->set_down_handler([self](caf::down_msg&) { self->quit(); });
    return {
      [self, driver, timeout](execute_atom, scheduler_output& step, bool fail_fast,
                              step_callback& done) {
        auto& st = self->state;
        auto id = st.next++;
        st.pending.emplace(id, std::move(done));
        arm_deadline_timer(self, st.deadlines.add(id, self->clock().now() + timeout));
        self->request(driver, caf::infinite, execute_atom::value, std::move(step), fail_fast)
          .then([self, id](model_runner_output& out) { answer(self, id, std::move(out)); },
                [self, id](caf::error& err) { answer(self, id, std::move(err)); });
      },
      [self](deadline_atom, uint64_t) {
        auto overdue = self->state.deadlines.expire(self->clock().now());
        arm_deadline_timer(self, overdue.arm_at);
        for (auto id : overdue.keys)
          answer(self, id, make_error(errc::timeout, "the driver did not answer the step"));
      },
      // Behind the steps submitted before it, in the same mailbox.
      [self, driver](teardown_atom) { return self->delegate(driver, teardown_atom::value); },
      [self, driver](teardown_atom, recover_atom) {
        return self->delegate(driver, teardown_atom::value, recover_atom::value);
      },
    };
  });
}

} // namespace cafex
