# `moesys train --runtime cpu`: expert tensor parallelism computes the same model. Each pair runs one model on the same
# ranks with the all-gather dispatcher, without and with the routed experts' FFN width split over an
# expert-tensor-parallel group (each member keeps its shard of the same initial experts), and the losses must agree
# at every step within float rounding: the shards' partial outputs, their partial input gradients and their parts of
# the combine weights' gradients are summed by the dispatcher's reduce-scatters. SwiGLU's gate and up halves are
# split alike, shared experts stay whole, and the experts' gradients are reduced (or, under the distributed
# optimizer, sharded) over the expert replicas, which the split changes. Plain SGD (an update that is the gradient
# itself) catches a gradient summed twice.
include(${CMAKE_CURRENT_LIST_DIR}/cpu_losses.cmake)

set(gpt "{\"global_batch\": 16, \"micro_batch\": 2, \"experts\": 8, \"top_k\": 2, \"capacity_factor\": 0.5}")
set(deepseek "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 3, \"experts\": 8, \"top_k\": 4, \"global_batch\": 16}")
set(deepseek_sgd "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 3, \"experts\": 8, \"top_k\": 4, \"global_batch\": 16, \"optimizer\": \"sgd\"}")
set(qwen "{\"preset\": \"qwen3-235b-a22b\", \"layers\": 4, \"experts\": 8, \"top_k\": 2, \"global_batch\": 16, \"attention\": {\"kind\": \"gqa\", \"kv_heads\": 2, \"head_dim\": 64, \"qk_norm\": true}}")
set(sgd_config "${CMAKE_CURRENT_BINARY_DIR}/expert-tensor-parallel-sgd.json")
file(WRITE "${sgd_config}" "{\"model\": {\"preset\": \"gpt-moe\"}, \"learning_rate\": 0.5}")
set(dropless "\"gate\": \"dropless\", \"dispatch\": \"counts\"")
# name | model | reference parallel | split parallel | policy toggles (on top of deepspeed, all-gather dispatcher)
set(pairs "gshard capacity, gelu experts over 4|gpt|{\"ep\": 4}|{\"ep\": 1, \"etp\": 4}|\"dense\": \"ddp\""
          "swiglu experts and a shared expert, one expert replica against two|deepseek|{\"ep\": 2}|{\"ep\": 2, \"etp\": 2}|\"dense\": \"ddp\", ${dropless}"
          "distributed optimizer sharding the experts|deepseek|{\"ep\": 1}|{\"ep\": 1, \"etp\": 2}|\"dense\": \"distributed\", ${dropless}"
          "two pipeline stages, tensor parallel attention|qwen|{\"pp\": 2, \"tp\": 2, \"ep\": 2}|{\"pp\": 2, \"tp\": 2, \"ep\": 1, \"etp\": 2}|\"dense\": \"ddp\", ${dropless}"
          "plain sgd|deepseek_sgd|{\"ep\": 2}|{\"ep\": 2, \"etp\": 2}|\"dense\": \"ddp\", ${dropless}")

foreach(pair IN LISTS pairs)
  string(REPLACE "|" ";" parts "${pair}")
  list(GET parts 0 name)
  list(GET parts 1 model_name)
  list(GET parts 2 reference_parallel)
  list(GET parts 3 split_parallel)
  list(GET parts 4 toggles)
  set(model "${${model_name}}")
  set(extra "")
  if(model_name MATCHES "sgd")
    set(extra --config "${sgd_config}")
  endif()
  set(policy "{\"preset\": \"deepspeed\", ${toggles}, \"dispatcher\": \"all_gather\"}")
  cpu_losses(4 3 "${model}" "${reference_parallel}" "${policy}" reference ${extra})
  cpu_losses(4 3 "${model}" "${split_parallel}" "${policy}" split ${extra})
  message(STATUS "${name}: ${reference} | ${split}")
  expect_same_losses("${name} (expert tensor parallelism)" "${reference}" "${split}")
endforeach()
