# `moesys train --runtime cpu`: tensor parallelism (with sequence parallelism) computes the same model. Each pair
# runs the same data-parallel size (2) without and with tensor-parallel groups, from the same initial weights (each
# member keeps its shard of every tensor) on the same data (a group shares its replica's micro-batch, one sequence
# shard each), and must give the same loss at every step within float rounding: attention heads, MLA's
# up-projections and the dense FFN's width are split, the partial outputs reduce-scattered, and the gradients of the
# tensors every member holds whole (norms, router, shared experts, MLA's down-projections, embedding) summed over the
# group. The gate is dropless: a capacity per rank would drop different tokens once the ranks hold half as many.
# AdamW's update does not change when a gradient is scaled, so a gradient summed twice over the group would pass with
# it; the "sgd" pairs (plain SGD at a large step, whose update is the gradient itself) catch that.
set(policy "{\"gate\": \"dropless\", \"dispatch\": \"counts\", \"dense\": \"DENSE\"}")
set(deepseek "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 4, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16}")
set(qwen "{\"preset\": \"qwen3-235b-a22b\", \"layers\": 3, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16, \"attention\": {\"kind\": \"gqa\", \"kv_heads\": 2, \"head_dim\": 64, \"qk_norm\": true}}")
set(gpt "{\"global_batch\": 16, \"micro_batch\": 2, \"experts\": 4}")
set(deepseek_sgd "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 4, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16, \"optimizer\": \"sgd\"}")
set(qwen_sgd "{\"preset\": \"qwen3-235b-a22b\", \"layers\": 3, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16, \"optimizer\": \"sgd\", \"attention\": {\"kind\": \"gqa\", \"kv_heads\": 2, \"head_dim\": 64, \"qk_norm\": true}}")
# The SGD runs' step size (--config: the learning rate; the model and layout come from the flags).
set(sgd_config "${CMAKE_CURRENT_BINARY_DIR}/tensor-parallel-sgd.json")
file(WRITE "${sgd_config}" "{\"model\": {\"preset\": \"gpt-moe\"}, \"learning_rate\": 0.5}")
# name | model | reference parallel | reference dense | ranks | tensor-parallel layout | dense
set(pairs "mla, shared experts, dense first layer|deepseek|{}|ddp|4|{\"tp\": 2}|ddp"
          "mla under the distributed optimizer, selective recompute|deepseek|{}|ddp|4|{\"tp\": 2, \"recompute\": \"selective\"}|distributed"
          "gqa with qk norms, two pipeline stages|qwen|{}|ddp|8|{\"tp\": 2, \"pp\": 2, \"stage_layers\": [1, 2]}|distributed"
          "learned positions, tied embedding|gpt|{}|ddp|4|{\"tp\": 2}|ddp"
          "mla, plain sgd|deepseek_sgd|{}|ddp|4|{\"tp\": 2}|ddp"
          "gqa, plain sgd, the distributed optimizer|qwen_sgd|{}|ddp|4|{\"tp\": 2}|distributed")

include(${CMAKE_CURRENT_LIST_DIR}/cpu_losses.cmake)

function(losses ranks model parallel dense out)
  string(REPLACE "DENSE" "${dense}" pol "${policy}")
  set(extra "")
  if(model MATCHES "sgd")
    set(extra --config "${sgd_config}")
  endif()
  cpu_losses(${ranks} 3 "${model}" "${parallel}" "${pol}" values ${extra})
  set(${out} "${values}" PARENT_SCOPE)
endfunction()

foreach(pair IN LISTS pairs)
  string(REPLACE "|" ";" parts "${pair}")
  list(GET parts 0 name)
  list(GET parts 1 model_name)
  list(GET parts 2 ref_parallel)
  list(GET parts 3 ref_dense)
  list(GET parts 4 ranks)
  list(GET parts 5 parallel)
  list(GET parts 6 dense)
  set(model "${${model_name}}")
  losses(2 "${model}" "${ref_parallel}" ${ref_dense} reference)
  losses(${ranks} "${model}" "${parallel}" ${dense} split)
  message(STATUS "${name}: ${reference} | ${split}")
  expect_same_losses("${name} (with tensor parallelism)" "${reference}" "${split}")
endforeach()
