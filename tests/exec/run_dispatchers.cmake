# `moesys train --runtime cpu`: the all-gather and DeepEP dispatchers compute the same model as the all-to-all one. Each case
# runs one model, layout and policy with "dispatcher": "all_to_all" and "all_gather" on 4 ranks and the losses must
# agree at every step within float rounding (a token's weighted expert outputs are summed by the combine kernel of
# one rank in one case, by the reduce-scatter over the members in the other). The gate's slots decide the rows in
# both, so capacity drops, padded blocks (a capacity, or dropless the group's largest load), shared experts, the
# sigmoid gate's groups, pipeline stages with full recompute, experts offloaded to host memory and tensor-parallel
# token shards must all come out the same.
include(${CMAKE_CURRENT_LIST_DIR}/cpu_losses.cmake)

set(gpt "{\"global_batch\": 16, \"micro_batch\": 2, \"experts\": 8, \"top_k\": 2, \"capacity_factor\": 0.5}")
set(deepseek "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 3, \"experts\": 8, \"top_k\": 4, \"global_batch\": 16}")
# Tensor-parallel token shards sum their partial products in another order than one rank's full product: under AdamW
# that rounding, on the near-zero gradients of some weights, becomes updates of a whole step (with OpenBLAS's AVX-512
# kernels the loss moved by 4.2e-5 after two steps), so that case runs plain SGD, whose update is the gradient, at a
# learning rate that moves the loss as far as AdamW does.
set(sgd_config "${CMAKE_CURRENT_BINARY_DIR}/dispatchers-sgd.json")
file(WRITE "${sgd_config}" "{\"model\": {\"preset\": \"gpt-moe\"}, \"learning_rate\": 0.5}")
set(deepseek_sgd "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 3, \"experts\": 8, \"top_k\": 4, \"global_batch\": 16, \"optimizer\": \"sgd\"}")
set(qwen "{\"preset\": \"qwen3-235b-a22b\", \"layers\": 4, \"experts\": 8, \"top_k\": 2, \"global_batch\": 16, \"attention\": {\"kind\": \"gqa\", \"kv_heads\": 2, \"head_dim\": 64, \"qk_norm\": true}}")
set(dropless "\"gate\": \"dropless\", \"dispatch\": \"counts\"")
# name | model | parallel | policy toggles (on top of deepspeed with ddp)
set(cases "gshard capacity drops, padded blocks|gpt|{}|\"dense\": \"ddp\""
          "dropless, blocks padded to the group's largest load|gpt|{}|\"dense\": \"ddp\", \"gate\": \"dropless\""
          "mla, shared expert, sigmoid gate in groups, top-4|deepseek|{}|\"dense\": \"ddp\", ${dropless}"
          "two pipeline stages, full recompute|qwen|{\"pp\": 2, \"recompute\": \"full\"}|\"dense\": \"distributed\", ${dropless}"
          "experts offloaded to host memory|gpt|{}|\"dense\": \"ddp\", \"offload\": \"cpu\""
          "tensor-parallel token shards|deepseek_sgd|{\"tp\": 2}|\"dense\": \"ddp\", ${dropless}")

foreach(case IN LISTS cases)
  string(REPLACE "|" ";" parts "${case}")
  list(GET parts 0 name)
  list(GET parts 1 model_name)
  list(GET parts 2 parallel)
  list(GET parts 3 toggles)
  set(model "${${model_name}}")
  set(extra "")
  if(model_name MATCHES "_sgd$")
    set(extra --config "${sgd_config}")
  endif()
  cpu_losses(4 3 "${model}" "${parallel}" "{\"preset\": \"deepspeed\", ${toggles}}" reference ${extra})
  cpu_losses(4 3 "${model}" "${parallel}" "{\"preset\": \"deepspeed\", ${toggles}, \"dispatcher\": \"all_gather\"}" gathered
             ${extra})
  message(STATUS "${name}: ${reference} | ${gathered}")
  expect_same_losses("${name} (all-gather dispatcher)" "${reference}" "${gathered}")
endforeach()

# The DeepEP dispatcher sends the all-to-all dispatcher's rows (real runtimes move them directly; only the
# simulator forwards them along rails), so its losses are the all-to-all one's.
cpu_losses(4 3 "${deepseek}" "{}" "{\"preset\": \"deepspeed\", \"dense\": \"ddp\", ${dropless}}" reference)
cpu_losses(4 3 "${deepseek}" "{}" "{\"preset\": \"deepspeed\", \"dense\": \"ddp\", ${dropless}, \"dispatcher\": \"deepep\"}" deepep)
message(STATUS "deepep dispatcher: ${reference} | ${deepep}")
expect_same_losses("DeepEP dispatcher" "${reference}" "${deepep}")
