import { Controller, Delete, Get, Param } from '@nestjs/common';
import { ReportService } from './report.service.js';

@Controller('reports')
export class ReportsController {
  constructor(private readonly reports: ReportService) {}

  @Get(':id')
  async one(@Param('id') id: string) {
    const started = performance.now();
    const report = await this.reports.report(id);
    return {
      ...report,
      servedInMs: Math.round(performance.now() - started),
      builds: this.reports.builds,
    };
  }

  @Delete(':id')
  async forget(@Param('id') id: string) {
    return { deleted: await this.reports.forget(id) };
  }
}
