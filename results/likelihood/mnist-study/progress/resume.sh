#!/bin/bash
# Resume the 250-epoch training of study mnist-likelihood's winner (trial 16) from the state saved here.
# Usage: resume.sh /path/to/vaelab-clone   (a clone of this repository; it is checked out at CODE below),
# with the project's venv (dvc, TensorFlow) first on PATH.
# The training runs as the DVC experiment mnist-likelihood-trial16 in that clone's workspace; each epoch
# leaves a checkpoint in its checkpoints/train/, which save.sh copies back here.
set -euo pipefail
CODE=d4205ab  # the code the training started with: dvc.lock of the result will name these files
here=$(cd "$(dirname "$0")" && pwd)
clone=$(cd "$1" && pwd)
git -C "$clone" checkout -q "$CODE"
mkdir -p "$clone/checkpoints/train"
if [ -f "$here/checkpoints/state.json" ]; then
  cp "$here"/checkpoints/* "$clone/checkpoints/train/"
  cp "$here/mlflow.db" "$clone/mlflow.db"  # the run resumes: its per-epoch metrics so far are in it
else
  echo "no saved state in $here (dvc pull it if a remote has it): the training starts at epoch 1" >&2
fi
cd "$clone"
export PYTHONPATH="$clone/src:$clone${PYTHONPATH:+:$PYTHONPATH}"  # its own code, not an installed vaelab
exec dvc exp run -n mnist-likelihood-trial16 \
  -S base.experiment=vaelab-mnist-likelihood -S paths.processed=data/processed-binarized -S data.binarize=dynamic \
  -S train.z_dim=62 -S 'train.encoder_filters=[32,64,128]' -S 'train.encoder_kernels=[3,3,3]' \
  -S 'train.encoder_strides=[2,2,1]' -S 'train.decoder_filters=[64,32,1]' -S 'train.decoder_kernels=[3,3,3]' \
  -S 'train.decoder_strides=[1,2,2]' -S train.reconstruction=bce -S train.r_loss_factor=784.0 \
  -S train.learning_rate=0.0016152982496764952 -S train.lr_decay=0.9811654229255335 -S train.kl_warmup_epochs=0 \
  -S train.batch_size=79 -S train.epochs=250 -S train.loss=iwae -S train.iwae_samples=7 -S train.precision=float32
