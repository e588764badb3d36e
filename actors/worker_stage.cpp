#include "actors/worker_stage.hpp"

#include "runtime/error.hpp"

namespace cafex {

namespace {

std::string link_name(const dag_config& cfg, int upstream_stage, int tp_rank) {
  return "dag" + std::to_string(cfg.generation) + "/pp" + std::to_string(upstream_stage) + "-"
         + std::to_string(upstream_stage + 1) + "/tp" + std::to_string(tp_rank);
}

} // namespace

caf::expected<std::unique_ptr<worker_stage>> worker_stage::open(const worker_state& st,
                                                                dag_config cfg) {
  auto type = parse_channel_type(cfg.channel);
  if (!type)
    return type.error();
  channel_options co;
  co.type = *type;
  co.store_url = cfg.store_url;
  co.bind_host = cfg.bind_host;
  co.timeout = std::chrono::milliseconds(cfg.timeout_ms);
  std::unique_ptr<p2p_channel> from_prev, to_next;
  if (!cfg.shm_prefix.empty()) { // the hot loop moves the bytes through shared memory
    auto stage = std::make_unique<worker_stage>(std::move(cfg), st.rank, st.tp_rank(), nullptr,
                                                nullptr);
    stage->set_fault_hooks(st.faults);
    return stage;
  }
  // Downstream first: stage k waits for stage k-1 before connecting to stage k+1, so
  // the links come up along the pipeline without a cycle.
  if (cfg.stage > 0) {
    co.group = link_name(cfg, cfg.stage - 1, st.tp_rank());
    co.upstream = false;
    auto ch = open_channel(co);
    if (!ch)
      return ch.error();
    from_prev = std::move(*ch);
  }
  if (cfg.stage < cfg.num_stages - 1) {
    co.group = link_name(cfg, cfg.stage, st.tp_rank());
    co.upstream = true;
    auto ch = open_channel(co);
    if (!ch)
      return ch.error();
    to_next = std::move(*ch);
  }
  auto stage = std::make_unique<worker_stage>(std::move(cfg), st.rank, st.tp_rank(),
                                              std::move(from_prev), std::move(to_next));
  stage->set_fault_hooks(st.faults);
  return stage;
}

worker_stage::worker_stage(dag_config cfg, int rank, int tp_rank,
                           std::unique_ptr<p2p_channel> from_prev,
                           std::unique_ptr<p2p_channel> to_next)
  : cfg_(std::move(cfg)),
    rank_(rank),
    tp_rank_(tp_rank),
    from_prev_(std::move(from_prev)),
    to_next_(std::move(to_next)) {}

caf::expected<intermediate_tensors> worker_stage::receive(uint64_t seq,
                                                          const tensor_desc& desc) {
  auto who = "rank " + std::to_string(rank_) + " (stage " + std::to_string(cfg_.stage) + ")";
  if (!from_prev_)
    return make_error(errc::invalid_argument, who + " has no previous stage to receive from");
  if (desc.type != dtype::f32 || desc.shape.size() != 2 || !desc.consistent()
      || desc.step_id != seq)
    return make_error(errc::transport_failed,
                      who + " got a malformed tensor descriptor for step "
                        + std::to_string(seq));
  intermediate_tensors t;
  t.num_tokens = desc.shape[0];
  t.hidden_size = desc.shape[1];
  t.hidden.resize(static_cast<size_t>(desc.numel()));
  if (desc.byte_size > 0)
    if (auto err = from_prev_->recv(t.hidden.data(), desc.byte_size, seq))
      return err;
  return t;
}

caf::expected<worker_stage::outcome> worker_stage::run(model_runner& runner, uint64_t seq,
                                                       const scheduler_output& step,
                                                       const intermediate_tensors* input) {
  if (faults_)
    faults_->before_step(); // fault.delay: this rank's results reach its peers late
  auto r = runner.execute(step, input);
  if (!r)
    return r.error();
  outcome out;
  if (!last()) {
    if (faults_)
      faults_->before_forward(); // fault.die_before_forward
    out.tensors = std::move(r->to_next);
    out.forward = make_tensor_desc(dtype::f32,
                                   {out.tensors.num_tokens, out.tensors.hidden_size}, seq,
                                   "hidden");
    if (cfg_.report_all) {
      model_runner_output kv;
      kv.step_id = step.step_id;
      kv_bookkeeping(step, kv);
      out.report = std::move(kv);
    }
    return out;
  }
  auto& o = r->output;
  o.step_id = step.step_id;
  if (cfg_.report_all) {
    kv_bookkeeping(step, o);
    out.report = std::move(o);
  } else if (tp_rank_ == 0) {
    // The output rank: worker 0 of the last stage, as the seed's refs[0].
    out.report = std::move(o);
  }
  return out;
}

caf::error worker_stage::push(uint64_t seq, const outcome& out) {
  if (!out.forward || out.forward->byte_size == 0)
    return caf::none;
  if (!to_next_)
    return make_error(errc::invalid_argument,
                      "rank " + std::to_string(rank_) + " has no next stage to send to");
  return to_next_->send(out.tensors.hidden.data(), out.forward->byte_size, seq);
}

void worker_stage::kv_bookkeeping(const scheduler_output& step, model_runner_output& out) {
  if (cfg_.kv_connector != "loopback")
    return;
  size_t delay = static_cast<size_t>(rank_ % 2);
  kv_delay_.push_back(step.finished);
  while (kv_delay_.size() > delay) {
    auto& ready = kv_delay_.front();
    out.finished_sending.insert(out.finished_sending.end(), ready.begin(), ready.end());
    kv_delay_.pop_front();
  }
}

} // namespace cafex
