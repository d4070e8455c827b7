# `moesys train --runtime cpu`: selective recomputation changes what a layer keeps, not what it computes. A model with
# every part a module can drop (MLA, SwiGLU experts, shared experts, a dense first layer) must give the same loss at
# every step with nothing recomputed, each module alone, and all of them: the backward recomputes the dropped norm
# outputs, activations and up-projections with the same kernels on the same kept inputs. Two stages with interleaved
# chunks run too, so that recomputation meets 1F1B (another micro-batch's forward between a forward and its
# backward, which reuses the same scratch). The losses must agree to the last digit.
set(model "{\"preset\": \"deepseek-v3\", \"mtp_layers\": 0, \"layers\": 4, \"experts\": 4, \"top_k\": 2, \"global_batch\": 16}")
set(runs "2|{}"
         "2|{\"recompute\": \"selective\", \"recompute_modules\": [\"layernorm\"]}"
         "2|{\"recompute\": \"selective\", \"recompute_modules\": [\"moe_act\"]}"
         "2|{\"recompute\": \"selective\", \"recompute_modules\": [\"mlp\"]}"
         "2|{\"recompute\": \"selective\", \"recompute_modules\": [\"mla_up_proj\"]}"
         "2|{\"recompute\": \"selective\"}"
         "4|{\"pp\": 2, \"vpp\": 2, \"stage_layers\": [1, 1, 1, 1], \"recompute\": \"selective\"}")
set(reference "")
foreach(run IN LISTS runs)
  string(REPLACE "|" ";" parts "${run}")
  list(GET parts 0 ranks)
  list(GET parts 1 parallel)
  execute_process(COMMAND ${MOESYS} train --runtime cpu --ranks ${ranks} --steps 3 --model ${model}
                          --parallel ${parallel} --policy "{\"dense\": \"ddp\"}" --json
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${run}: exit ${rc}\n${out}\n${err}")
  endif()
  # Every digit: the same kernels on the same inputs give the same values.
  string(JSON losses GET "${out}" loss_per_step)
  message(STATUS "${run}: ${losses}")
  if(reference STREQUAL "")
    set(reference "${losses}")
  elseif(NOT losses STREQUAL reference)
    message(FATAL_ERROR "${run} gave '${losses}', nothing recomputed '${reference}'")
  endif()
endforeach()
