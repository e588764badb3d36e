#include "actors/client_actor.hpp"

#include "runtime/error.hpp"

namespace cafex {

caf::actor spawn_client(caf::actor_system& sys, const driver_actor& driver,
                        std::chrono::milliseconds timeout) {
  return sys.spawn([driver, timeout](caf::event_based_actor* self) -> caf::behavior {
    // The driver answers (or fails) every step before it quits, and its down message
    // comes after those answers: leaving then loses nothing.
    self->monitor(driver);
    self->set_down_handler([self](caf::down_msg&) { self->quit(); });
    return {
      [self, driver, timeout](execute_atom, scheduler_output& step, bool fail_fast,
                              step_callback& done) {
        self->request(driver, timeout, execute_atom::value, std::move(step), fail_fast)
          .then([done](model_runner_output& out) { done(std::move(out)); },
                [done](caf::error& err) {
                  if (err == caf::sec::request_timeout)
                    done(make_error(errc::timeout, "the driver did not answer the step"));
                  else
                    done(std::move(err));
                });
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
