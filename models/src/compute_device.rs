//! Where tensors live: `cpu` or `cuda:N`, parsed from the command line and checked against
//! what the linked libtorch can do (the CPU build assembled by `scripts/setup` has no CUDA).

use tch::{Cuda, Device};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`: use cpu, cuda or cuda:N")]
    Unknown(String),
    #[error(
        "device `{0}` asked for, but this build's libtorch has no usable CUDA: rebuild with a CUDA libtorch (set FRACTURE_LIBTORCH before scripts/setup) on a machine with an NVIDIA GPU"
    )]
    NoCuda(String),
    #[error("device `{asked}` asked for, but only {count} CUDA device(s) are visible")]
    NoSuchGpu { asked: String, count: usize },
}

/// Parses `cpu`, `cuda` (device 0) or `cuda:N` and checks it exists.
pub fn parse_device(s: &str) -> Result<Device, DeviceError> {
    let lower = s.trim().to_ascii_lowercase();
    if lower == "cpu" {
        return Ok(Device::Cpu);
    }
    let index = match lower.strip_prefix("cuda") {
        Some("") => 0,
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| DeviceError::Unknown(s.to_string()))?,
        None => return Err(DeviceError::Unknown(s.to_string())),
    };
    if !Cuda::is_available() {
        return Err(DeviceError::NoCuda(s.to_string()));
    }
    let count = Cuda::device_count() as usize;
    if index >= count {
        return Err(DeviceError::NoSuchGpu { asked: s.to_string(), count });
    }
    Ok(Device::Cuda(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rejects_nonsense() {
        assert_eq!(parse_device("CPU").ok(), Some(Device::Cpu));
        assert!(matches!(parse_device("gpu"), Err(DeviceError::Unknown(_))));
        assert!(matches!(parse_device("cuda:x"), Err(DeviceError::Unknown(_))));
    }

    #[test]
    fn cuda_is_refused_with_advice_when_absent() {
        if !Cuda::is_available() {
            let e = parse_device("cuda:0").expect_err("no CUDA here");
            assert!(e.to_string().contains("FRACTURE_LIBTORCH"), "{e}");
        }
    }
}
