#include "actors/worker_hot_loop.hpp"

#include <spdlog/spdlog.h>

#include "runtime/defaults.hpp"
#include "runtime/error.hpp"
#include "transport/shm_futex.hpp"
#include "transport/shm_messages.hpp"
#include "transport/spin_governor.hpp"

namespace cafex {

caf::expected<std::unique_ptr<worker_hot_loop>>
worker_hot_loop::start(worker_state& st, worker_stage& stage, std::mutex& runner_mutex) {
  const auto& cfg = stage.config();
  const auto& p = cfg.shm_prefix;
  std::unique_ptr<worker_hot_loop> loop{new worker_hot_loop(st, stage, runner_mutex)};
  auto in = stage.first() ? shm_ring::open(p + "cmd" + std::to_string(st.rank))
                          : shm_ring::open(p + "link" + std::to_string(st.rank - cfg.tp));
  if (!in)
    return in.error();
  loop->in_ = std::move(*in);
  if (!stage.last()) {
    auto next = shm_ring::open(p + "link" + std::to_string(st.rank));
    if (!next)
      return next.error();
    loop->next_ = std::move(*next);
  }
  auto report = shm_ring::open(p + "res" + std::to_string(st.rank));
  if (!report)
    return report.error();
  loop->report_ = std::move(*report);
  auto bell = shm_doorbell::open(p + "bell");
  if (!bell)
    return bell.error();
  loop->bell_ = std::move(*bell);
  auto lane_bell = shm_doorbell::open(p + "dbell");
  if (!lane_bell)
    return lane_bell.error();
  loop->lane_bell_ = std::move(*lane_bell);
  auto board = shm_board::open(p + "board");
  if (!board)
    return board.error();
  loop->board_ = std::move(*board);
  loop->thread_ = std::thread([l = loop.get()] { l->run(); });
  return loop;
}

worker_hot_loop::worker_hot_loop(worker_state& st, worker_stage& stage, std::mutex& mtx)
  : st_(st),
    stage_(stage),
    runner_mutex_(mtx),
    timeout_(std::chrono::milliseconds(stage.config().timeout_ms)),
    // The next step follows soon after a step ends: a short spin catches it without a
    // sleep, where every process of the dataflow (and its caller) has a core.
    spin_(spin_budget(stage.config().tp * stage.config().num_stages + 1,
                      std::chrono::microseconds{stage.config().spin_us})) {}

worker_hot_loop::~worker_hot_loop() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
}

void worker_hot_loop::run() {
  // Only right after a step is the next one likely soon: then spin before sleeping, for
  // as long as steps keep coming within the spin (spin_governor.hpp).
  spin_governor spin{spin_};
  while (!stop_) {
    // A short bound lets the thread notice stop_ without anyone closing the ring.
    if (auto err = in_->read(buf_, defaults::shm_worker_wake, spin.before_read())) {
      if (in_->closed())
        return;
      spin.idle();
      continue;
    }
    spin.arrived(spin_governor::clock::now());
    handle(buf_);
    spin.handled(spin_governor::clock::now());
  }
}

shm_doorbell* worker_hot_loop::bell_for(uint64_t seq) const {
  // The caller of a direct step reads the output rank's reports itself.
  bool output = stage_.last()
                && st_.rank == (stage_.config().num_stages - 1) * stage_.config().tp;
  return is_direct_seq(seq) && output ? lane_bell_.get() : bell_.get();
}

void worker_hot_loop::report_failure(uint64_t seq, const caf::error& err) {
  spdlog::warn("rank {} failed step {}: {}", st_.rank, seq & ~direct_seq_bit, describe(err));
  if (is_direct_seq(seq))
    board_->set(static_cast<size_t>(st_.rank), seq);
  if (auto e = write_report(*report_, bell_for(seq), seq, st_.rank, report_kind::failure,
                            nullptr, &err, timeout_))
    spdlog::error("rank {} cannot report to the driver: {}", st_.rank, describe(e));
}

void worker_hot_loop::handle(const std::vector<char>& bytes) {
  auto m = read_step_message(bytes, !stage_.first());
  if (!m) {
    report_failure(0, m.error());
    return;
  }
  caf::expected<worker_stage::outcome> out{caf::error{}};
  {
    std::lock_guard<std::mutex> guard{runner_mutex_};
    try {
      out = stage_.run(*st_.runner, m->seq, m->step, m->has_tensors ? &m->tensors : nullptr);
    } catch (const std::exception& e) {
      out = make_error(errc::model_failed, std::string("execute_model threw: ") + e.what());
    }
  }
  if (!out) {
    auto err = out.error();
    if (describe(err).find("rank ") == std::string::npos)
      err = make_error(code_of(err) == errc::none ? errc::model_failed : code_of(err),
                       "rank " + std::to_string(st_.rank) + " on node " + st_.node_id + ": "
                         + describe(err));
    report_failure(m->seq, err);
    return;
  }
  if (out->forward) {
    if (auto err = write_handoff(*next_, m->seq, m->step_bytes, out->tensors, timeout_)) {
      report_failure(m->seq, err);
      return;
    }
  }
  auto kind = out->report ? report_kind::result : report_kind::progress;
  if (is_direct_seq(m->seq)) {
    // Nobody waits for a direct step's progress: the board names a stuck rank instead.
    board_->set(static_cast<size_t>(st_.rank), m->seq);
    if (kind == report_kind::progress)
      return;
  }
  if (auto err = write_report(*report_, bell_for(m->seq), m->seq, st_.rank, kind,
                              out->report ? &*out->report : nullptr, nullptr, timeout_)) {
    // A closed ring means the driver tore the dataflow down: nobody waits for this.
    if (report_->closed())
      spdlog::debug("rank {}: step {} finished after teardown", st_.rank, m->seq);
    else
      spdlog::error("rank {} cannot report step {}: {}", st_.rank, m->seq, describe(err));
  }
}

} // namespace cafex
