"""Random-access (input, target) windows cut from trajectories, channels-last and normalised."""

import numpy as np

from sciml.data.stats import channel_stats
from sciml.data.well import Trajectories
from sciml.errors import DatasetError


class WindowDataset:
    """Samples ``x = u[t : t + s*n_in : s]``, ``y = u[t + s*n_in : t + s*(n_in + n_out) : s]``.

    Fields are laid out as channels (a vector field gives one channel per component) and time steps
    are stacked on the channel axis: x has shape (*space, n_in * C), y (*space, n_out * C), with
    channel index ``step * C + c``. With `stats`, channels are normalised to zero mean and unit std.
    """

    def __init__(
        self,
        traj: Trajectories,
        *,
        fields: list[str] | None = None,
        input_steps: int = 1,
        output_steps: int = 1,
        dt_stride: int = 1,
        stats: dict | None = None,
    ):
        self.fields = list(traj.fields) if fields is None else list(fields)
        self.ndim = traj.n_spatial_dims
        arrays = []
        for name in self.fields:
            a = traj.fields[name]
            arrays.append(a.reshape(*a.shape[: 2 + self.ndim], -1))
        self.frames = np.concatenate(arrays, axis=-1).astype(np.float32)
        self.input_steps, self.output_steps, self.dt_stride = input_steps, output_steps, dt_stride
        n_traj, n_time = self.frames.shape[:2]
        span = (input_steps + output_steps - 1) * dt_stride + 1
        if span > n_time:
            raise DatasetError(
                f"a window of {input_steps} input + {output_steps} output steps at stride {dt_stride}"
                f" spans {span} time steps but trajectories have {n_time}; lower data.input_steps,"
                " data.output_steps or data.dt_stride"
            )
        self.windows_per_traj = n_time - span + 1
        self.n_trajectories = n_traj
        n_channels = self.frames.shape[-1]
        if stats is None:
            self.mean = np.zeros(n_channels, np.float32)
            self.std = np.ones(n_channels, np.float32)
        else:
            self.mean, self.std = channel_stats(stats, self.fields)
        self.frames = (self.frames - self.mean) / self.std

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.frames.shape[2:-1]

    @property
    def channels(self) -> int:
        return self.frames.shape[-1]

    def __len__(self) -> int:
        return self.n_trajectories * self.windows_per_traj

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows `indices` as arrays (B, *space, n_in*C) and (B, *space, n_out*C)."""
        indices = np.asarray(indices)
        traj, start = np.divmod(indices, self.windows_per_traj)
        steps = np.arange(self.input_steps + self.output_steps) * self.dt_stride
        frames = self.frames[traj[:, None], start[:, None] + steps]  # (B, n_in + n_out, *space, C)
        frames = np.moveaxis(frames, 1, -2)  # (B, *space, T, C)
        frames = frames.reshape(*frames.shape[:-2], -1)
        split = self.input_steps * self.channels
        return frames[..., :split], frames[..., split:]

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.get_batch(np.array([index]))
        return x[0], y[0]

    def denormalize(self, y: np.ndarray) -> np.ndarray:
        """Undo the normalisation of a target- or input-shaped array (..., n_steps * C)."""
        reps = y.shape[-1] // self.channels
        return y * np.tile(self.std, reps) + np.tile(self.mean, reps)
