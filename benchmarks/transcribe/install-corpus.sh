#!/usr/bin/env bash
# The labelled speech of benchmarks/transcribe: Asterisk's core prompts in English, Spanish and
# French (8 kHz WAV files, recorded by professional voices) with their texts, from Debian.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
