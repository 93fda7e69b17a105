// Timings of the page's own work (board renders, graph layouts), and when each task's card
// (by task id) first showed: read by the browser tests and bench/dashboard.py as window.swarmStats.

const KEEP = 2000;

export const stats = {
  timings: Object.create(null),
  firstSeen: Object.create(null),
  /** When each task's `task.created` event reached the page (by task id). */
  created: Object.create(null),

  record(name, ms) {
    const list = this.timings[name] || (this.timings[name] = []);
    list.push(Math.round(ms * 100) / 100);
    if (list.length > KEEP) list.shift();
  },

  arrived(ev) {
    if (ev.type === 'task.created' && ev.task_id && !(ev.task_id in this.created)) {
      this.created[ev.task_id] = Date.now();
    }
  },

  seen(id) {
    if (!(id in this.firstSeen)) this.firstSeen[id] = Date.now();
  },
};

window.swarmStats = stats;
