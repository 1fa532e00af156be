// Show each <time> in the viewer's own time zone (the page shows the offset without script).
for (const t of document.querySelectorAll("time[datetime]")) {
  const when = new Date(t.getAttribute("datetime"));
  if (!isNaN(when)) { t.title = t.textContent; t.textContent = when.toLocaleString(); }
}
