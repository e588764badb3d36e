// Boost.Asio adapters for the executor: the completion-handler form of execute_model.
// The handler runs on the Asio executor you name (never on a CAF thread), so a host
// whose state lives on an io_context (or a strand) needs no locks to consume results.
//
//   cafex::async_execute_model(ex, step, ioc, [](caf::expected<model_runner_output> r) {
//     ... runs on a thread that runs ioc ...
//   });
//
// Until the handler runs, a work guard keeps the executor's io_context from running out
// of work, so `ioc.run()` does not return with a step outstanding.
#pragma once

#include <memory>
#include <type_traits>
#include <utility>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "cafex/executor.hpp"

namespace cafex {

/// Submits `step` (see executor::submit) and calls `handler(caf::expected<
/// model_runner_output>)` once, through boost::asio::post on `where` (an Asio executor
/// such as `ioc.get_executor()` or a strand). Never blocks the calling thread. After
/// executor::shutdown() the handler still runs, with errc::not_ready.
template <
  class AsioExecutor, class Handler,
  class = std::enable_if_t<!std::is_convertible_v<AsioExecutor&, boost::asio::io_context&>>>
void async_execute_model(executor& ex, const scheduler_output& step, const AsioExecutor& where,
                         Handler&& handler, when_full full = when_full::wait) {
  using result = caf::expected<model_runner_output>;
  // std::function needs a copyable callable; the handler may be move-only.
  auto h = std::make_shared<std::decay_t<Handler>>(std::forward<Handler>(handler));
  auto guard = boost::asio::make_work_guard(where);
  ex.submit(step, full, [h, guard](result r) mutable {
    auto exec = guard.get_executor();
    boost::asio::post(exec, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
    guard.reset();
  });
}

/// The same, posting to `ioc`.
template <class Handler>
void async_execute_model(executor& ex, const scheduler_output& step,
                         boost::asio::io_context& ioc, Handler&& handler,
                         when_full full = when_full::wait) {
  async_execute_model(ex, step, ioc.get_executor(), std::forward<Handler>(handler), full);
}

} // namespace cafex
