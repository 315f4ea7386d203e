"""Random-access (input, target) windows cut from trajectories, channels-last and normalised."""

import numpy as np
from jaxtyping import Array

from sciml.data.stats import channel_stats
from sciml.data.well import Trajectories
from sciml.errors import DatasetError


class WindowDataset:
    """Samples ``x = u[t : t + s*n_in : s]``, ``y = u[t + s*n_in : t + s*(n_in + n_out) : s]``.

    Fields are laid out as channels (a vector field gives one channel per component) and time steps
    are stacked on the channel axis: x has shape (*space, n_in * C), y (*space, n_out * C), with
    channel index ``step * C + c``. With `stats`, channels are normalised to zero mean and unit std.

    With `target_fields` the map is field-to-field instead of forward in time (Darcy's a -> u):
    x holds `fields` and y holds `target_fields` at the same n_in times.
    """

    def __init__(
        self,
        traj: Trajectories,
        *,
        fields: list[str] | None = None,
        target_fields: list[str] | None = None,
        input_steps: int = 1,
        output_steps: int = 1,
        dt_stride: int = 1,
        stats: dict | None = None,
    ):
        self.fields = list(traj.fields) if fields is None else list(fields)
        self.target_fields = None if target_fields is None else list(target_fields)
        self.ndim = traj.n_spatial_dims
        names = list(dict.fromkeys(self.fields + (self.target_fields or [])))
        arrays, columns, start = [], {}, 0
        for name in names:
            if name not in traj.fields:
                raise DatasetError(
                    f"field {name!r} is not in the dataset; it has {sorted(traj.fields)}"
                )
            a = traj.fields[name]
            arrays.append(a.reshape(*a.shape[: 2 + self.ndim], -1))
            columns[name] = list(range(start, start + arrays[-1].shape[-1]))
            start += arrays[-1].shape[-1]
        self.frames = np.concatenate(arrays, axis=-1).astype(np.float32)
        self.in_columns = [c for name in self.fields for c in columns[name]]
        self.out_columns = [c for name in self.target_fields or self.fields for c in columns[name]]
        self.input_steps, self.dt_stride = input_steps, dt_stride
        self.output_steps = input_steps if self.target_fields else output_steps
        n_traj, n_time = self.frames.shape[:2]
        forward = 0 if self.target_fields else output_steps
        span = (input_steps + forward - 1) * dt_stride + 1
        if span > n_time:
            raise DatasetError(
                f"a window of {input_steps} input + {forward} output steps at stride {dt_stride}"
                f" spans {span} time steps but trajectories have {n_time}; lower data.input_steps,"
                " data.output_steps or data.dt_stride"
            )
        self.windows_per_traj = n_time - span + 1
        self.n_trajectories = n_traj
        if stats is None:
            self.mean = np.zeros(self.frames.shape[-1], np.float32)
            self.std = np.ones(self.frames.shape[-1], np.float32)
        else:
            self.mean, self.std = channel_stats(stats, names)
        self.frames = (self.frames - self.mean) / self.std

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.frames.shape[2:-1]

    @property
    def channels(self) -> int:
        """Input channels per time step."""
        return len(self.in_columns)

    def __len__(self) -> int:
        return self.n_trajectories * self.windows_per_traj

    def get_batch(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows `indices` as arrays (B, *space, n_in*C_in) and (B, *space, n_out*C_out)."""
        indices = np.asarray(indices)
        traj, start = np.divmod(indices, self.windows_per_traj)
        in_steps = np.arange(self.input_steps) * self.dt_stride
        out_steps = (
            in_steps
            if self.target_fields
            else (
                np.arange(self.input_steps, self.input_steps + self.output_steps) * self.dt_stride
            )
        )
        x = self._gather(traj, start, in_steps, self.in_columns)
        y = self._gather(traj, start, out_steps, self.out_columns)
        return x, y

    def _gather(self, traj, start, steps, columns) -> np.ndarray:
        frames = self.frames[traj[:, None], start[:, None] + steps][
            ..., columns
        ]  # (B, T, *space, C)
        frames = np.moveaxis(frames, 1, -2)  # (B, *space, T, C)
        return frames.reshape(*frames.shape[:-2], -1)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.get_batch(np.array([index]))
        return x[0], y[0]

    def denormalize(self, y: Array | np.ndarray) -> Array | np.ndarray:
        """Undo the normalisation of a target-shaped array (..., n_out * C_out)."""
        return self._undo(y, self.out_columns)

    def denormalize_input(self, x: Array | np.ndarray) -> Array | np.ndarray:
        """Undo the normalisation of an input-shaped array (..., n_in * C_in)."""
        return self._undo(x, self.in_columns)

    def _undo(self, a: Array | np.ndarray, columns: list[int]) -> Array | np.ndarray:
        reps = a.shape[-1] // len(columns)
        shape = (1,) * (np.ndim(a) - 1) + (-1,)  # explicit, so jax arrays need no rank promotion
        std = np.tile(self.std[columns], reps).reshape(shape)
        return a * std + np.tile(self.mean[columns], reps).reshape(shape)
